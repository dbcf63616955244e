package ownership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/jetcoord/coordinator/internal/natstest"
	"github.com/jetcoord/coordinator/kv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testTTL = 2 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// node is one engine with its own connection, as a separate process would have.
type node struct {
	name string
	nc   *nats.Conn
	e    *Engine
}

func startNode(t *testing.T, srv *natstest.Server, name string, cfg Config, register func(*Engine)) *node {
	t.Helper()
	nc := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := kv.Open(ctx, nc, kv.Options{Namespace: "t"})
	if err != nil {
		t.Fatalf("kv.Open: %v", err)
	}
	e, err := New(st, name, cfg, WithLogger(quiet))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	register(e)
	if err := e.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return &node{name: name, nc: nc, e: e}
}

// runs records every run of a worker: who ran it, with which token, from when to when.
type runs struct {
	mu   sync.Mutex
	list []run
}

type run struct {
	node        string
	token       uint64
	start, stop time.Time
	cause       error
}

func (r *runs) worker(node string) WorkerFunc {
	return func(ctx context.Context, lease *Lease) error {
		r.mu.Lock()
		i := len(r.list)
		r.list = append(r.list, run{node: node, token: lease.Token(), start: time.Now()})
		r.mu.Unlock()
		<-ctx.Done()
		r.mu.Lock()
		r.list[i].stop = time.Now()
		r.list[i].cause = context.Cause(ctx)
		r.mu.Unlock()
		return nil
	}
}

func (r *runs) snapshot() []run {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]run(nil), r.list...)
}

// running returns the runs that have not stopped.
func (r *runs) running() []run {
	var out []run
	for _, x := range r.snapshot() {
		if x.stop.IsZero() {
			out = append(out, x)
		}
	}
	return out
}

// checkNoOverlap fails if two runs overlapped in time or tokens did not increase.
func (r *runs) checkNoOverlap(t *testing.T) {
	t.Helper()
	l := r.snapshot()
	for i := 1; i < len(l); i++ {
		prev, cur := l[i-1], l[i]
		if prev.stop.IsZero() || cur.start.Before(prev.stop) {
			t.Errorf("run %d (%s, token %d) started at %v while run %d (%s, token %d) still ran (stopped %v)",
				i, cur.node, cur.token, cur.start.Format(time.StampMicro), i-1, prev.node, prev.token, prev.stop.Format(time.StampMicro))
		}
		if cur.token < prev.token {
			t.Errorf("token went backwards: %d after %d", cur.token, prev.token)
		}
	}
}

// nameFor returns a worker name for which want is the preferred node among nodes (all of
// weight 1), so that placement does not move it in tests about something else.
func nameFor(prefix, want string, nodes ...string) string {
	for i := 0; ; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		best, bestScore := "", 0.0
		for _, n := range nodes {
			if s := score(name, n, 1); best == "" || s > bestScore {
				best, bestScore = n, s
			}
		}
		if best == want {
			return name
		}
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExactlyOneOwner(t *testing.T) {
	srv := natstest.Run(t)
	var r runs
	billing := nameFor("billing", "a", "a", "b")
	a := startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(billing, r.worker("a")) })
	waitFor(t, "a to run billing", 5*time.Second, func() bool { return len(r.running()) == 1 })
	b := startNode(t, srv, "b", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(billing, r.worker("b")) })

	// The seed's {:error, {:already_registered, pid}}: b learns who owns it.
	owner, err := b.e.Lookup(context.Background(), billing)
	if err != nil {
		t.Fatal(err)
	}
	if owner.Node != "a" || owner.Token == 0 {
		t.Fatalf("owner = %+v, want node a with a token", owner)
	}
	// Several renewals later, still one run, on a.
	time.Sleep(2 * testTTL) // letting time pass is the point here, not synchronisation
	if got := r.snapshot(); len(got) != 1 || got[0].node != "a" {
		t.Fatalf("runs = %+v, want exactly one on a", got)
	}
	if got := a.e.Owned(); len(got) != 1 {
		t.Fatalf("a.Owned() = %v", got)
	}
	if got := b.e.Owned(); len(got) != 0 {
		t.Fatalf("b.Owned() = %v", got)
	}
	owner2, _ := b.e.Lookup(context.Background(), billing)
	if owner2.Token != owner.Token {
		t.Fatalf("token changed on renewal: %d -> %d", owner.Token, owner2.Token)
	}
}

func TestGracefulHandoff(t *testing.T) {
	srv := natstest.Run(t)
	w := nameFor("w", "a", "a", "b")
	var r runs
	a := startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, r.worker("a")) })
	waitFor(t, "a to run w", 5*time.Second, func() bool { return len(r.running()) == 1 })
	startNode(t, srv, "b", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, r.worker("b")) })
	closed := time.Now()
	if err := a.e.Close(); err != nil {
		t.Fatal(err)
	}
	// Far less than a TTL: b saw the release and claimed at once.
	waitFor(t, "b to run w", testTTL/2, func() bool { return len(r.running()) == 1 && r.running()[0].node == "b" })
	t.Logf("handoff took %v", time.Since(closed))
	l := r.snapshot()
	if !errors.Is(l[0].cause, ErrStopping) {
		t.Errorf("a's worker ended with %v, want ErrStopping", l[0].cause)
	}
	if l[1].token <= l[0].token {
		t.Errorf("new token %d not larger than %d", l[1].token, l[0].token)
	}
	r.checkNoOverlap(t)
}

// The owner is cut off from the server (its connection drops and stays down): it stops its
// worker at the renew deadline, before the other node takes over after the TTL.
func TestCutOffOwnerFencesBeforeTakeover(t *testing.T) {
	srv := natstest.Run(t)
	w := nameFor("w", "a", "a", "b")
	var r runs
	a := startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, r.worker("a")) })
	waitFor(t, "a to run w", 5*time.Second, func() bool { return len(r.running()) == 1 })
	startNode(t, srv, "b", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, r.worker("b")) })
	first := r.snapshot()[0]

	cut := time.Now()
	a.nc.Close() // no release: to the cluster this is a crash

	waitFor(t, "b to take over", 3*testTTL, func() bool {
		l := r.running()
		return len(l) == 1 && l[0].node == "b"
	})
	l := r.snapshot()
	t.Logf("a fenced after %v, b started after %v", l[0].stop.Sub(cut), l[1].start.Sub(cut))
	if !errors.Is(l[0].cause, ErrLeaseExpired) {
		t.Errorf("a's worker ended with %v, want ErrLeaseExpired", l[0].cause)
	}
	if l[1].token <= first.token {
		t.Errorf("takeover token %d not larger than %d", l[1].token, first.token)
	}
	r.checkNoOverlap(t)
}

// The renew loop is stuck (a blocked call, a deadlock): the fence timer still ends the
// worker's context at the deadline, and the takeover happens after it.
func TestBlockedRenewLoopStillFences(t *testing.T) {
	srv := natstest.Run(t)
	w := nameFor("w", "a", "a", "b")
	var r runs
	block := make(chan struct{})
	var blocked atomic.Bool
	a := startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) {
		e.testBeforeRenew = func(string) {
			if blocked.Load() {
				<-block
			}
		}
		_ = e.Register(w, r.worker("a"))
	})
	_ = a
	waitFor(t, "a to run w", 5*time.Second, func() bool { return len(r.running()) == 1 })
	startNode(t, srv, "b", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, r.worker("b")) })
	blocked.Store(true)
	waitFor(t, "b to take over", 3*testTTL, func() bool {
		l := r.running()
		return len(l) == 1 && l[0].node == "b"
	})
	close(block)
	l := r.snapshot()
	if !errors.Is(l[0].cause, ErrLeaseExpired) {
		t.Errorf("a's worker ended with %v, want ErrLeaseExpired", l[0].cause)
	}
	r.checkNoOverlap(t)
	// Unblocked, a sees the claim is b's and does not start the worker on its own; placement
	// may hand it back to a later, in a new term, after b stopped it.
	time.Sleep(testTTL)
	r.checkNoOverlap(t)
	l = r.snapshot()
	if len(l) > 2 && !errors.Is(l[1].cause, ErrStopping) {
		t.Fatalf("a ran the worker again without a handoff from b: %+v", l)
	}
}

func TestFailingWorkerRestartsWithBackoff(t *testing.T) {
	srv := natstest.Run(t)
	nc := srv.Connect()
	events := make(chan Event, 100)
	sub, err := nc.Subscribe("t.events.worker.flaky.*", func(m *nats.Msg) {
		var ev Event
		if json.Unmarshal(m.Data, &ev) == nil {
			events <- ev
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	var calls atomic.Int32
	cfg := ConfigForTTL(testTTL)
	cfg.RestartBackoff = 20 * time.Millisecond
	startNode(t, srv, "a", cfg, func(e *Engine) {
		_ = e.Register("flaky", func(ctx context.Context, l *Lease) error {
			switch calls.Add(1) {
			case 1:
				return errors.New("boom")
			case 2:
				panic("kaboom")
			}
			<-ctx.Done()
			return nil
		})
	})
	waitFor(t, "third call", 5*time.Second, func() bool { return calls.Load() >= 3 })
	var failed []Event
	waitFor(t, "two failed events", 5*time.Second, func() bool {
		for {
			select {
			case ev := <-events:
				if ev.Type == EventFailed {
					failed = append(failed, ev)
				}
				continue
			default:
			}
			return len(failed) >= 2
		}
	})
	if failed[0].Error != "boom" || failed[1].Node != "a" || failed[1].Cluster != "t" || failed[0].ID == failed[1].ID {
		t.Fatalf("failed events = %+v", failed)
	}
	if want := "panic: kaboom"; len(failed[1].Error) < len(want) || failed[1].Error[:len(want)] != want {
		t.Fatalf("panic event error = %q", failed[1].Error)
	}
}

func TestMalformedClaimIsForeign(t *testing.T) {
	srv := natstest.Run(t)
	nc := srv.Connect()
	ctx := context.Background()
	st, err := kv.Open(ctx, nc, kv.Options{Namespace: "t"})
	if err != nil {
		t.Fatal(err)
	}
	garbageRev, err := st.Workers.Create(ctx, "w", []byte("hand-written garbage"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var r runs
	a := startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register("w", r.worker("a")) })
	if _, err := a.e.Lookup(ctx, "w"); !errors.Is(err, ErrUnknownOwner) {
		t.Fatalf("Lookup = %v, want ErrUnknownOwner", err)
	}
	if len(r.snapshot()) != 0 {
		t.Fatal("worker started on top of a foreign value")
	}
	// Nobody renews the garbage: after a TTL it is cleared with compare-and-set and claimed.
	waitFor(t, "a to claim after the TTL", 3*testTTL, func() bool { return len(r.running()) == 1 })
	if tok := r.snapshot()[0].token; tok <= garbageRev {
		t.Fatalf("token %d not after the garbage revision %d", tok, garbageRev)
	}
}

func TestRegisterRejectsBadNames(t *testing.T) {
	srv := natstest.Run(t)
	a := startNode(t, srv, "a", ConfigForTTL(testTTL), func(*Engine) {})
	noop := func(context.Context, *Lease) error { return nil }
	if err := a.e.Register("a b", noop); !errors.Is(err, kv.ErrInvalidName) {
		t.Fatalf("Register(\"a b\") = %v", err)
	}
	if err := a.e.Register("ok", noop); err != nil {
		t.Fatal(err)
	}
	if err := a.e.Register("ok", noop); !errors.Is(err, ErrAlreadyRegistered) {
		t.Fatalf("second Register = %v", err)
	}
	if err := a.e.Unregister(context.Background(), "missing"); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("Unregister(missing) = %v", err)
	}
}

func TestUnregisterReleases(t *testing.T) {
	srv := natstest.Run(t)
	var r runs
	a := startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register("w", r.worker("a")) })
	waitFor(t, "a to run w", 5*time.Second, func() bool { return len(r.running()) == 1 })
	if err := a.e.Unregister(context.Background(), "w"); err != nil {
		t.Fatal(err)
	}
	if len(r.running()) != 0 {
		t.Fatal("worker still running after Unregister")
	}
	if _, err := a.e.Lookup(context.Background(), "w"); !errors.Is(err, ErrNotOwned) {
		t.Fatalf("Lookup after Unregister = %v, want ErrNotOwned", err)
	}
}

func TestConfigDefaultsAndValidate(t *testing.T) {
	c := DefaultConfig()
	c.derive()
	want := map[string][2]time.Duration{
		"TTL":           {c.TTL, 15 * time.Second},
		"RenewInterval": {c.RenewInterval, 3 * time.Second},
		"RenewDeadline": {c.RenewDeadline, 12 * time.Second},
		"FenceGrace":    {c.FenceGrace, 2500 * time.Millisecond},
		"ShutdownGrace": {c.ShutdownGrace, 30 * time.Second},
		"ClaimTTL":      {c.ClaimTTL, 24 * time.Hour},
	}
	if c.TakeoverRate != 500 {
		t.Errorf("default TakeoverRate = %v, want 500", c.TakeoverRate)
	}
	for k, v := range want {
		if v[0] != v[1] {
			t.Errorf("default %s = %v, want %v", k, v[0], v[1])
		}
	}
	if c.RebalanceThreshold != 0.1 || c.ClaimGrace != 6*time.Second || c.RebalanceDelay != 6*time.Second {
		t.Errorf("defaults RebalanceThreshold %v, ClaimGrace %v, RebalanceDelay %v; want 0.1, 6s, 6s", c.RebalanceThreshold, c.ClaimGrace, c.RebalanceDelay)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.RenewInterval = c.RenewDeadline }, "RenewInterval"},
		{func(c *Config) { c.RenewDeadline = c.TTL }, "RenewDeadline"},
		{func(c *Config) { c.TTL = 500 * time.Millisecond }, "too short"},
		{func(c *Config) { c.FenceGrace = c.TTL }, "FenceGrace"},
		{func(c *Config) { c.RebalanceThreshold = -1 }, "RebalanceThreshold"},
		{func(c *Config) { c.ClaimTTL = 9 * c.TTL }, "ClaimTTL"},
	}
	for i, b := range bad {
		c := DefaultConfig()
		b.mod(&c)
		err := c.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), b.want) {
			t.Errorf("case %d: Validate() = %v, want ErrInvalidConfig mentioning %q", i, err, b.want)
		}
	}
}

func TestReleaseHandsOver(t *testing.T) {
	srv := natstest.Run(t)
	w := nameFor("w", "a", "a", "b")
	var r runs
	a := startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, r.worker("a")) })
	waitFor(t, "a to run w", 5*time.Second, func() bool { return len(r.running()) == 1 })
	b := startNode(t, srv, "b", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, r.worker("b")) })
	// A release goes to a node the releasing one knows (else it takes the worker back).
	waitFor(t, "a to see b", testTTL, func() bool { return len(a.e.Members()) == 2 })
	if err := b.e.Release(context.Background(), w); !errors.Is(err, ErrNotOwned) {
		t.Fatalf("Release on a non-owner = %v, want ErrNotOwned", err)
	}
	if err := a.e.Release(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to run w", testTTL, func() bool { l := r.running(); return len(l) == 1 && l[0].node == "b" })
	// Drain b: the worker comes back to a, and b claims nothing while draining.
	b.e.SetDraining(context.Background(), true)
	waitFor(t, "a to run w again", testTTL, func() bool { l := r.running(); return len(l) == 1 && l[0].node == "a" })
	r.checkNoOverlap(t)
	waitFor(t, "b's record to say draining", testTTL, func() bool {
		for _, m := range a.e.Members() {
			if m.Node == "b" {
				return m.Draining
			}
		}
		return false
	})
}
