// Package web serves the daemon's read-only status page on its --http listener: the live
// nodes with their workers, the cron jobs with their last and next runs, and a timeline of
// lifecycle events that the page receives as server-sent events. The page is plain HTML,
// CSS and JavaScript embedded in the binary; actions stay in the CLI.
package web

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed index.html style.css app.js
var assets embed.FS

// Feed is a stream of lifecycle events.
type Feed interface {
	// Next returns the next event's stream sequence and JSON payload. It blocks until one
	// arrives or ctx ends (then it returns ctx's error); any other error ends the feed.
	Next(ctx context.Context) (seq uint64, event []byte, err error)
	// Stop releases the feed.
	Stop()
}

// Source is where the page's data comes from; each func may fail while the node starts.
type Source struct {
	Node   string // the node that serves the page
	Status func(context.Context) (any, error)
	Jobs   func(context.Context) (any, error)
	// Events opens a feed of the events after stream sequence after or, when after is 0,
	// of those published in the last since.
	Events func(ctx context.Context, after uint64, since time.Duration) (Feed, error)
	// Token, when set, guards the page and its data like /status: a request must carry it
	// as a bearer token or as the password of HTTP basic authentication (any user name).
	// Browsers cannot add a header to the page's requests, but they ask for a basic
	// password once and then send it with every request, the event stream's included.
	Token string
}

// Backlog is how far back a page that opens the timeline starts.
const Backlog = 15 * time.Minute

// keepAlive is how often an idle event stream sends a comment, so that proxies and the
// browser see the connection is alive.
const keepAlive = 15 * time.Second

// Handler serves the page at / and its data under /ui/. It answers 404 for other paths, so
// it can sit at the root of a mux.
func Handler(src Source) http.Handler {
	h := &handler{src: src}
	h.closing, h.shutdown = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.asset("index.html", "text/html; charset=utf-8"))
	mux.HandleFunc("GET /ui/style.css", h.asset("style.css", "text/css; charset=utf-8"))
	mux.HandleFunc("GET /ui/app.js", h.asset("app.js", "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET /ui/state", h.state)
	mux.HandleFunc("GET /ui/events", h.events)
	if src.Token == "" {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !Authorized(r, src.Token) {
			w.Header().Set("WWW-Authenticate", `Basic realm="coordinator", charset="UTF-8"`)
			http.Error(w, "unauthorized: give node.http_token as the password (any user name), or send Authorization: Bearer <node.http_token>", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// Authorized reports whether r carries token, as a bearer token or as the password of basic
// authentication (what a browser sends after a prompt). The daemon's /metrics and /status
// use it too, so that every guarded endpoint accepts the same credentials.
func Authorized(r *http.Request, token string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		_, got, ok = r.BasicAuth()
	}
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

type handler struct {
	src Source

	once     sync.Once
	closing  context.Context // ends when the server shuts down: event streams end with it
	shutdown context.CancelFunc
}

func (h *handler) asset(name, ctype string) http.HandlerFunc {
	body, err := assets.ReadFile(name)
	if err != nil {
		panic(err) // embedded at build time
	}
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(body)
	}
}

// State is the JSON of /ui/state. A part that could not be read carries its error instead.
type State struct {
	Node        string    `json:"node"`
	Time        time.Time `json:"time"`
	Status      any       `json:"status,omitempty"`
	StatusError string    `json:"status_error,omitempty"`
	Jobs        any       `json:"jobs,omitempty"`
	JobsError   string    `json:"jobs_error,omitempty"`
}

func (h *handler) state(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	s := State{Node: h.src.Node, Time: time.Now().UTC()}
	var err error
	if s.Status, err = h.src.Status(ctx); err != nil {
		s.Status, s.StatusError = nil, err.Error()
	}
	if s.Jobs, err = h.src.Jobs(ctx); err != nil {
		s.Jobs, s.JobsError = nil, err.Error()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(s)
}

// events streams lifecycle events as server-sent events. Each carries its stream sequence
// as its id, so a browser that reconnects (it sends Last-Event-ID) resumes where it was.
func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming not supported by this connection", http.StatusInternalServerError)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// http.Server.Shutdown waits for active connections, and an event stream never goes
	// idle: end it when the server shuts down.
	if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok {
		h.once.Do(func() { srv.RegisterOnShutdown(h.shutdown) })
		defer context.AfterFunc(h.closing, cancel)()
	}
	after, _ := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64)

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	fmt.Fprint(w, "retry: 2000\n\n")
	fl.Flush()

	var feed Feed
	for feed == nil {
		f, err := h.src.Events(ctx, after, Backlog)
		if err == nil {
			feed = f
			break
		}
		// The store is not open yet (the node is starting): say so and try again.
		fmt.Fprintf(w, "event: problem\ndata: %s\n\n", jsonString(err.Error()))
		fl.Flush()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	defer feed.Stop()
	fmt.Fprint(w, "event: ready\ndata: {}\n\n")
	fl.Flush()
	for {
		nctx, ncancel := context.WithTimeout(ctx, keepAlive)
		seq, data, err := feed.Next(nctx)
		ncancel()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, context.DeadlineExceeded):
			fmt.Fprint(w, ": keep-alive\n\n")
		case err != nil:
			// The browser reconnects and resumes from the last id.
			fmt.Fprintf(w, "event: problem\ndata: %s\n\n", jsonString("event stream ended: "+err.Error()))
			fl.Flush()
			return
		default:
			// One line per data field: compact the JSON; a payload that is not JSON (a
			// hand-written message on an events subject) is not drawn.
			var b bytes.Buffer
			if json.Compact(&b, data) != nil {
				continue
			}
			fmt.Fprintf(w, "id: %d\nevent: lifecycle\ndata: %s\n\n", seq, b.Bytes())
		}
		fl.Flush()
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
