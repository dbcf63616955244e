package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetcoord/coordinator/kv"
)

// The output of supervised commands goes, besides the daemon's log, to the stream
// <NS>_LOGS on <ns>.logs.worker.<W> (and <ns>.logs.job.<J>), so that `coordinator logs W`
// shows a worker's output wherever it ran, across failovers. Retention is bounded by age
// and size; the oldest lines go first.
const (
	logsMaxAge   = 24 * time.Hour
	logsMaxBytes = 256 << 20
)

func logsStream(ns string) string              { return strings.ToUpper(ns) + "_LOGS" }
func logsSubject(ns, kind, name string) string { return ns + ".logs." + kind + "." + name }

// LogLine is one line of a command's output in the logs stream, as `logs --json` prints it.
type LogLine struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"` // worker or job
	Name   string    `json:"name"`
	Node   string    `json:"node"`
	Token  uint64    `json:"token"`
	Stream string    `json:"stream"` // stdout or stderr
	Line   string    `json:"line"`
}

// ensureLogsStream creates or updates the logs stream of namespace ns.
func ensureLogsStream(ctx context.Context, js jetstream.JetStream, ns string, replicas int) error {
	cfg := jetstream.StreamConfig{
		Name:        logsStream(ns),
		Description: "coordinator: output of supervised commands",
		Subjects:    []string{ns + ".logs.>"},
		MaxAge:      logsMaxAge,
		MaxBytes:    logsMaxBytes,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		Replicas:    max(1, replicas),
	}
	if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("creating stream %s: %w", cfg.Name, err)
	}
	return nil
}

// outputTee is a slog.Handler for one supervised run: records that carry a "stream"
// attribute (a line of the command's output) also go to the logs stream; everything goes
// to the daemon's handler as before.
type outputTee struct {
	inner slog.Handler
	nc    *nats.Conn
	subj  string
	line  LogLine
}

func newOutputTee(inner slog.Handler, nc *nats.Conn, ns, kind, name, node string, token uint64) *outputTee {
	return &outputTee{inner: inner, nc: nc, subj: logsSubject(ns, kind, name),
		line: LogLine{Kind: kind, Name: name, Node: node, Token: token}}
}

// Enabled is true at Info and above whatever the daemon's level: output lines are logged
// at Info and must reach the stream even when the daemon logs warnings only.
func (t *outputTee) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || t.inner.Enabled(ctx, l)
}

func (t *outputTee) Handle(ctx context.Context, r slog.Record) error {
	stream := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "stream" {
			stream = a.Value.String()
			return false
		}
		return true
	})
	if stream != "" && t.nc != nil {
		l := t.line
		l.Time, l.Stream, l.Line = r.Time.UTC(), stream, r.Message
		if b, err := json.Marshal(l); err == nil {
			_ = t.nc.Publish(t.subj, b) // buffered; the stream keeps it
		}
	}
	if t.inner.Enabled(ctx, r.Level) {
		return t.inner.Handle(ctx, r)
	}
	return nil
}

func (t *outputTee) WithAttrs(as []slog.Attr) slog.Handler {
	c := *t
	c.inner = t.inner.WithAttrs(as)
	return &c
}

func (t *outputTee) WithGroup(name string) slog.Handler {
	c := *t
	c.inner = t.inner.WithGroup(name)
	return &c
}

// outputLogger returns the logger of one run of a supervised command.
func (d *daemon) outputLogger(kind, name string, token uint64) *slog.Logger {
	return slog.New(newOutputTee(d.log.Handler(), d.nc, d.cfg.Namespace, kind, name, d.cfg.Node.Name, token))
}

func logsCmd(args []string, stdout, stderr io.Writer) int {
	fs := newCmd("logs", "[flags] WORKER", "Print the output of WORKER (or of a cron job, with --job) wherever it ran, across failovers: what the logs\n"+
		"stream holds from --since ago, then exit; --follow keeps printing new lines.", stdout, stderr)
	var conn natsFlags
	conn.register(fs.FlagSet, defaultCLIURL())
	follow := fs.Bool("follow", false, "keep printing new lines until interrupted")
	since := fs.Duration("since", time.Hour, "show lines from this long ago")
	job := fs.Bool("job", false, "NAME is a cron job, not a worker")
	asJSON := fs.Bool("json", false, "print each line as JSON (time, kind, name, node, token, stream, line)")
	pos, code := fs.parse(args)
	if code >= 0 {
		return code
	}
	if len(pos) != 1 {
		return fs.usageError("WORKER is required")
	}
	kind := "worker"
	if *job {
		kind = "job"
	}
	if err := kv.ValidName(kind, pos[0]); err != nil {
		return fs.usageError(err.Error())
	}
	nc, st, err := cliConnect(&conn)
	if err != nil {
		return cliFail(stdout, stderr, "logs", false, err)
	}
	defer nc.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	print := func(data []byte) {
		if *asJSON {
			fmt.Fprintln(stdout, string(data))
			return
		}
		var l LogLine
		if json.Unmarshal(data, &l) != nil {
			fmt.Fprintf(stdout, "(not a log line: %q)\n", data)
			return
		}
		fmt.Fprintf(stdout, "%s %s[%d] %s| %s\n", l.Time.Local().Format("2006-01-02 15:04:05.000"), l.Node, l.Token, l.Stream, l.Line)
	}
	err = readStream(ctx, st.JetStream(), logsStream(st.Namespace()), logsSubject(st.Namespace(), kind, pos[0]), *since, *follow, print)
	if err != nil {
		return cliFail(stdout, stderr, "logs", false, err)
	}
	return 0
}

// readStream hands each message of stream on subject from since ago to print. Without
// follow it stops at the stream's last message as of the start; with follow it goes on
// until ctx ends.
func readStream(ctx context.Context, js jetstream.JetStream, stream, subject string, since time.Duration, follow bool, print func([]byte)) error {
	var upTo uint64
	if !follow {
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		s, err := js.Stream(ictx, stream)
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = s.Info(ictx)
		}
		cancel()
		if err != nil {
			return fmt.Errorf("reading stream %s: %w", stream, err)
		}
		if upTo = info.State.LastSeq; upTo == 0 || info.State.Msgs == 0 {
			return nil
		}
	}
	cons, err := js.OrderedConsumer(ctx, stream, orderedFrom(subject, 0, since))
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", stream, err)
	}
	if !follow {
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		info, err := cons.Info(ictx)
		cancel()
		if err != nil {
			return fmt.Errorf("reading stream %s: %w", stream, err)
		}
		if info.NumPending == 0 {
			return nil
		}
	}
	for {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		msg, err := cons.Next(jetstream.FetchContext(fctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !follow {
				return fmt.Errorf("stream %s stopped answering before its end: %w", stream, err)
			}
			continue
		}
		meta, err := msg.Metadata()
		if err != nil {
			return err
		}
		if upTo != 0 && meta.Sequence.Stream > upTo {
			return nil
		}
		print(msg.Data())
		if upTo != 0 && (meta.Sequence.Stream >= upTo || meta.NumPending == 0) {
			return nil
		}
	}
}
