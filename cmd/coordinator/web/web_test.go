package web

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// chanFeed hands out what the test sends; the daemon's feed reads the events stream (the
// Chromium test in integration/ covers that end to end).
type chanFeed struct {
	ch      chan [2]any // seq, payload
	stopped chan struct{}
}

func (f *chanFeed) Next(ctx context.Context) (uint64, []byte, error) {
	select {
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	case e := <-f.ch:
		return e[0].(uint64), []byte(e[1].(string)), nil
	}
}

func (f *chanFeed) Stop() { close(f.stopped) }

func newServer(t *testing.T, feed *chanFeed, after *uint64) *httptest.Server {
	t.Helper()
	src := Source{
		Node:   "n0",
		Status: func(context.Context) (any, error) { return map[string]any{"workers": []any{}}, nil },
		Jobs:   func(context.Context) (any, error) { return nil, errors.New("jobs not started yet") },
		Events: func(ctx context.Context, a uint64, since time.Duration) (Feed, error) {
			*after = a
			return feed, nil
		},
	}
	srv := httptest.NewServer(Handler(src))
	t.Cleanup(srv.Close)
	return srv
}

func TestPageAndState(t *testing.T) {
	var after uint64
	srv := newServer(t, &chanFeed{ch: make(chan [2]any), stopped: make(chan struct{})}, &after)
	for path, want := range map[string]string{"/": "text/html", "/ui/app.js": "text/javascript", "/ui/style.css": "text/css", "/ui/state": "application/json"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), want) || len(body) == 0 {
			t.Errorf("GET %s: %s, %q, %d bytes; want 200 and %s", path, resp.Status, resp.Header.Get("Content-Type"), len(body), want)
		}
		if path == "/ui/state" {
			var s State
			if err := json.Unmarshal(body, &s); err != nil || s.Node != "n0" || s.Status == nil || s.JobsError != "jobs not started yet" {
				t.Errorf("/ui/state = %s (%v): want the node, the status and the jobs error", body, err)
			}
		}
	}
	for _, path := range []string{"/nope", "/ui/", "/ui/nope.js"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", path, resp.Status)
		}
	}
	resp, err := http.Post(srv.URL+"/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %s, want 405: the page is read-only", resp.Status)
	}
}

// TestEvents: events go out with their stream sequence as id, a browser's Last-Event-ID
// resumes after it, a payload that is not JSON is skipped, and shutting the server down
// ends the stream (http.Server.Shutdown would otherwise wait for it).
func TestEvents(t *testing.T) {
	feed := &chanFeed{ch: make(chan [2]any), stopped: make(chan struct{})}
	var after uint64
	srv := newServer(t, feed, &after)
	req, _ := http.NewRequest("GET", srv.URL+"/ui/events", nil)
	req.Header.Set("Last-Event-ID", "41")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(prefix string) string {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended before %q", prefix)
				}
				if strings.HasPrefix(l, prefix) {
					return l
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no %q line", prefix)
			}
		}
	}
	next("event: ready")
	if after != 41 {
		t.Errorf("feed opened after %d, want 41 (Last-Event-ID)", after)
	}
	feed.ch <- [2]any{uint64(42), "not json"}
	feed.ch <- [2]any{uint64(43), "{\n \"type\": \"claimed\"\n}"}
	if l := next("id: "); l != "id: 43" {
		t.Errorf("got %q, want id: 43 (42 is not JSON)", l)
	}
	if l := next("data: "); l != `data: {"type":"claimed"}` {
		t.Errorf("got %q, want the payload on one line", l)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := srv.Config.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an open event stream: %v", err)
	}
	for range lines {
	}
	select {
	case <-feed.stopped:
	case <-time.After(5 * time.Second):
		t.Error("the feed was not stopped")
	}
	t.Logf("shutdown with an open stream took %v", time.Since(t0))
}

// TestToken: with a token, the page and its data answer only to it, as a bearer token or
// a basic password (what a browser can send with the event stream).
func TestToken(t *testing.T) {
	src := Source{
		Node:   "n0",
		Status: func(context.Context) (any, error) { return map[string]any{}, nil },
		Jobs:   func(context.Context) (any, error) { return []any{}, nil },
		Events: func(context.Context, uint64, time.Duration) (Feed, error) { return nil, errors.New("no events here") },
		Token:  "s3cret",
	}
	srv := httptest.NewServer(Handler(src))
	defer srv.Close()
	for _, tc := range []struct {
		name string
		auth func(*http.Request)
		want int
	}{
		{"none", func(*http.Request) {}, http.StatusUnauthorized},
		{"wrong basic", func(r *http.Request) { r.SetBasicAuth("ops", "nope") }, http.StatusUnauthorized},
		{"wrong bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }, http.StatusUnauthorized},
		{"basic", func(r *http.Request) { r.SetBasicAuth("ops", "s3cret") }, http.StatusOK},
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }, http.StatusOK},
	} {
		for _, path := range []string{"/", "/ui/state", "/ui/app.js"} {
			req, _ := http.NewRequest("GET", srv.URL+path, nil)
			tc.auth(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s: GET %s: %s, want %d", tc.name, path, resp.Status, tc.want)
			}
			if tc.want == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("%s: GET %s: WWW-Authenticate %q: a browser must be asked for the password", tc.name, path, resp.Header.Get("WWW-Authenticate"))
			}
		}
	}
}
