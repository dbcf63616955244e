package scheduler

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetcoord/coordinator/internal/natstest"
)

func slogTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// putByHand writes a value the way `nats kv put` does.
func putByHand(t *testing.T, srv *natstest.Server, key, value string) {
	t.Helper()
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := js.KeyValue(ctx, "t_jobs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, key, []byte(value)); err != nil {
		t.Fatal(err)
	}
}

// logLines collects log lines that contain a string.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.lines = append(l.lines, string(p))
	l.mu.Unlock()
	return len(p), nil
}

func (l *logLines) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(s, sub)
		}
		if all {
			n++
		}
	}
	return n
}

// Garbage in the jobs bucket (issue 15, scheduler part): a bad <job>.<T>.run value must not
// stall the job's tick loop (it retried tick T for miss-after + a lease TTL, and the ticks
// after it were missed), and a bad <job>.<T> value must not make tick T vanish without a
// word.
func TestGarbageInTheJobsBucket(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	var l ledger
	var logs logLines
	opts := testOpts(WithLogger(slogTo(&logs)))
	n := startNode(t, srv, "a", opts, func(s *Scheduler) {
		mustAdd(t, s, "tick", "* * * * * *", l.fn("a", nil))
	})
	badLease := time.Now().Truncate(time.Second).Add(2 * time.Second)
	badRecord := badLease.Add(time.Second)
	putByHand(t, srv, leaseKeyOf(tickKey("tick", badLease, false)), "not a lease")
	putByHand(t, srv, tickKey("tick", badRecord, false), "{broken")
	after := badRecord.Add(4 * time.Second)
	waitFor(t, "ticks after the garbage", 20*time.Second, func() bool {
		for _, r := range l.snapshot() {
			if !r.tick.Time.Before(after) {
				return true
			}
		}
		return false
	})
	_ = n.s.Close()
	ran := map[int64]bool{}
	for _, r := range l.snapshot() {
		ran[r.tick.Time.Unix()] = true
	}
	for s := badRecord.Unix() + 1; s < after.Unix(); s++ {
		if !ran[s] {
			t.Errorf("tick %d after the garbage did not run", s)
		}
	}
	if ran[badRecord.Unix()] {
		t.Errorf("tick %d ran over a garbage record", badRecord.Unix())
	}
	if c := logs.count(tickKey("tick", badRecord, false), "not a valid record"); c != 1 {
		t.Errorf("the garbage record %s was logged %d times, want once", tickKey("tick", badRecord, false), c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var state string
	if e, err := n.store.Jobs.Get(ctx, tickKey("tick", badLease, false)); err == nil {
		rec, _ := decodeRun(e.Key, e.Value)
		state = rec.State + " (" + rec.Reason + ")"
	}
	t.Logf("tick with a garbage run lease: record %q; ticks %d..%d ran", state, badRecord.Unix()+1, after.Unix()-1)
}
