package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/jetcoord/coordinator/internal/natstest"
	"github.com/jetcoord/coordinator/kv"
	"github.com/jetcoord/coordinator/lease"
	"github.com/jetcoord/coordinator/ownership"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Test timings: a tick is taken over after 0.5 s, missed after 1.5 s; run leases last 2 s.
const (
	testTakeover  = 500 * time.Millisecond
	testMissAfter = 1500 * time.Millisecond
	testLease     = 2 * time.Second
)

func testLogger() *slog.Logger {
	if os.Getenv("SCHEDULER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testOpts(extra ...Option) []Option {
	return append([]Option{WithLogger(testLogger()), WithTakeoverDelay(testTakeover),
		WithMissAfter(testMissAfter), WithRunLease(testLease)}, extra...)
}

// node is one scheduler with its own connection, as a separate process would have.
type node struct {
	name  string
	nc    *nats.Conn
	store *kv.Store
	s     *Scheduler
}

func openStore(t *testing.T, nc *nats.Conn) *kv.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := kv.Open(ctx, nc, kv.Options{Namespace: "t"})
	if err != nil {
		t.Fatalf("kv.Open: %v", err)
	}
	return st
}

func startNode(t *testing.T, srv *natstest.Server, name string, opts []Option, add func(*Scheduler)) *node {
	t.Helper()
	nc := srv.Connect()
	st := openStore(t, nc)
	s, err := New(st, name, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	add(s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &node{name: name, nc: nc, store: st, s: s}
}

func mustAdd(t *testing.T, s *Scheduler, name, spec string, fn func(context.Context, Tick) error, opts ...JobOption) {
	t.Helper()
	if err := s.Add(name, spec, fn, opts...); err != nil {
		t.Fatalf("Add(%q): %v", name, err)
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

// ledger records every call of a job function: where, which tick, from when to when.
type ledger struct {
	mu   sync.Mutex
	runs []ran
}

type ran struct {
	node       string
	tick       Tick
	start, end time.Time // real time
	cause      error     // context.Cause if the context had ended when the function returned
}

func (r ran) key() string { return tickKey(r.tick.Job, r.tick.Time, r.tick.Manual) }

func (l *ledger) fn(node string, body func(context.Context, Tick) error) func(context.Context, Tick) error {
	return func(ctx context.Context, tick Tick) error {
		l.mu.Lock()
		i := len(l.runs)
		l.runs = append(l.runs, ran{node: node, tick: tick, start: time.Now()})
		l.mu.Unlock()
		var err error
		if body != nil {
			err = body(ctx, tick)
		}
		l.mu.Lock()
		l.runs[i].end = time.Now()
		if ctx.Err() != nil {
			l.runs[i].cause = context.Cause(ctx)
		}
		l.mu.Unlock()
		return err
	}
}

func (l *ledger) snapshot() []ran {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]ran(nil), l.runs...)
}

// ticks returns the number of different ticks that ran, optionally only those on nodes.
func (l *ledger) ticks(nodes ...string) int {
	seen := map[string]bool{}
	for _, r := range l.snapshot() {
		if len(nodes) == 0 || contains(nodes, r.node) {
			seen[r.key()] = true
		}
	}
	return len(seen)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsSec(list []int64, s int64) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkOnce fails if a tick's attempt ran twice; it returns the runs by tick key.
func checkOnce(t *testing.T, runs []ran) map[string][]ran {
	t.Helper()
	by := map[string][]ran{}
	for _, r := range runs {
		for _, o := range by[r.key()] {
			if o.tick.Attempt == r.tick.Attempt {
				t.Errorf("tick %s attempt %d ran twice: on %s (token %d) and %s (token %d)",
					r.key(), r.tick.Attempt, o.node, o.tick.Token, r.node, r.tick.Token)
			}
		}
		by[r.key()] = append(by[r.key()], r)
	}
	return by
}

// checkNoGaps fails if a scheduled second between the first and the last run neither ran
// nor has a record saying why not (skipped: an earlier run still held its lease).
func checkNoGaps(t *testing.T, job string, by map[string][]ran, recs map[string]Run) (first, last int64) {
	t.Helper()
	var secs []int64
	for _, rs := range by {
		if !rs[0].tick.Manual {
			secs = append(secs, rs[0].tick.Time.Unix())
		}
	}
	if len(secs) == 0 {
		t.Fatal("no scheduled runs")
	}
	sort.Slice(secs, func(a, b int) bool { return secs[a] < secs[b] })
	for i := 1; i < len(secs); i++ {
		for s := secs[i-1] + 1; s < secs[i]; s++ {
			if rec, ok := recs[tickKey(job, time.Unix(s, 0), false)]; ok && rec.State == StateSkipped {
				t.Logf("tick %d skipped: %s", s, rec.Reason)
				continue
			}
			t.Errorf("tick %d did not run", s)
		}
	}
	return secs[0], secs[len(secs)-1]
}

// logDelays logs how late runs started after their tick time (real clock only).
func logDelays(t *testing.T, what string, runs []ran) {
	t.Helper()
	if len(runs) == 0 {
		return
	}
	var d []time.Duration
	for _, r := range runs {
		d = append(d, r.start.Sub(r.tick.Time))
	}
	sort.Slice(d, func(a, b int) bool { return d[a] < d[b] })
	t.Logf("%s: tick → run start over %d runs: min %v, median %v, max %v", what, len(d),
		d[0].Round(time.Millisecond), d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
}

// records reads every tick record of job from the store, by key.
func records(t *testing.T, st *kv.Store, job string) map[string]Run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, err := st.Jobs.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Run{}
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, job+".")
		if !ok || strings.Contains(rest, ".") || rest == "last" || rest == "catchup" {
			continue
		}
		e, err := st.Jobs.Get(ctx, k)
		if errors.Is(err, kv.ErrNotFound) {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		r, err := decodeRun(k, e.Value)
		if err != nil {
			t.Fatalf("record %s: %v", k, err)
		}
		r.Token = r.tokenAt(e.Revision)
		out[k] = r
	}
	return out
}

// events collects the job events of one job.
type events struct {
	mu   sync.Mutex
	list []ownership.Event
}

func subscribeEvents(t *testing.T, srv *natstest.Server, job string) *events {
	t.Helper()
	nc := srv.Connect()
	ev := &events{}
	sub, err := nc.Subscribe("t.events.job."+job+".*", func(m *nats.Msg) {
		var e ownership.Event
		if json.Unmarshal(m.Data, &e) == nil {
			ev.mu.Lock()
			ev.list = append(ev.list, e)
			ev.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return ev
}

func (e *events) of(typ string) []ownership.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []ownership.Event
	for _, x := range e.list {
		if x.Type == typ {
			out = append(out, x)
		}
	}
	return out
}

// Three nodes, a job every second: every tick runs exactly once, none is left out.
func TestEveryTickRunsOnceAcrossNodes(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	var l ledger
	var nodes []*node
	for _, name := range []string{"a", "b", "c"} {
		nodes = append(nodes, startNode(t, srv, name, testOpts(), func(s *Scheduler) {
			mustAdd(t, s, "tick", "@every 1s", l.fn(name, nil))
		}))
	}
	waitFor(t, "6 ticks", 15*time.Second, func() bool { return l.ticks() >= 6 })
	for _, n := range nodes {
		_ = n.s.Close()
	}
	runs := l.snapshot()
	by := checkOnce(t, runs)
	recs := records(t, nodes[0].store, "tick")
	checkNoGaps(t, "tick", by, recs)
	perNode := map[string]int{}
	for k, rs := range by {
		r := rs[0]
		perNode[r.node]++
		rec, ok := recs[k]
		switch {
		case !ok:
			t.Errorf("tick %s ran but has no record", k)
		case rec.Node != r.node || rec.Token != r.tick.Token || rec.Attempt != 1:
			t.Errorf("record %s = %+v, but it ran on %s with token %d", k, rec, r.node, r.tick.Token)
		case rec.State != StateSucceeded && rec.State != StateLost: // lost: cut by Close
			t.Errorf("record %s state %q", k, rec.State)
		}
	}
	for k, rec := range recs {
		// A tick claimed just as Close came is recorded lost (shutdown) before its run began.
		if _, ok := by[k]; !ok && rec.State != StateSkipped && !(rec.State == StateLost && rec.Reason == "shutdown") {
			t.Errorf("record %s (%s) has no run", k, rec.State)
		}
	}
	t.Logf("%d ticks; runs per node: %v", len(by), perNode)
	logDelays(t, "all nodes preferred", runs)
}

// The preferred node's connection drops: the others take its ticks over after the
// takeover delay, and no tick runs twice.
func TestPreferredNodeDownTicksMoveOn(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	var l ledger
	onlyA := WithPlacement(PlacementFunc(func(string) bool { return false }))
	var nodes []*node
	for _, name := range []string{"a", "b", "c"} {
		opts := testOpts(onlyA)
		if name == "a" {
			opts = testOpts()
		}
		nodes = append(nodes, startNode(t, srv, name, opts, func(s *Scheduler) {
			mustAdd(t, s, "tick", "* * * * * *", l.fn(name, nil))
		}))
	}
	waitFor(t, "3 ticks on a", 15*time.Second, func() bool { return l.ticks("a") >= 3 })
	cut := time.Now()
	nodes[0].nc.Close() // to the cluster, a crash
	waitFor(t, "4 ticks on b and c", 15*time.Second, func() bool {
		n := 0
		for _, r := range l.snapshot() {
			if r.start.After(cut) && r.node != "a" {
				n++
			}
		}
		return n >= 4
	})
	for _, n := range nodes[1:] {
		_ = n.s.Close()
	}
	runs := l.snapshot()
	by := checkOnce(t, runs)
	first, last := checkNoGaps(t, "tick", by, records(t, nodes[1].store, "tick"))
	var before, after []ran
	for _, r := range runs {
		switch {
		case r.start.Before(cut):
			before = append(before, r)
			if r.node != "a" {
				t.Errorf("tick %s ran on %s while the preferred node a was up", r.key(), r.node)
			}
		case r.node != "a":
			after = append(after, r)
		}
	}
	t.Logf("ticks %d..%d ran once each: %d on a before the cut, %d on b/c after", first, last, len(before), len(after))
	logDelays(t, "preferred node a", before)
	logDelays(t, "takeover by b/c (takeover delay 0.5s)", after)
}

func TestOverlapSkip(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	ev := subscribeEvents(t, srv, "slow")
	var l ledger
	slow := func(ctx context.Context, _ Tick) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2500 * time.Millisecond):
			return nil
		}
	}
	var nodes []*node
	for _, name := range []string{"a", "b"} {
		nodes = append(nodes, startNode(t, srv, name, testOpts(), func(s *Scheduler) {
			mustAdd(t, s, "slow", "* * * * * *", l.fn(name, slow))
		}))
	}
	waitFor(t, "3 runs", 20*time.Second, func() bool {
		n := 0
		for _, r := range l.snapshot() {
			if !r.end.IsZero() {
				n++
			}
		}
		return n >= 2 && len(l.snapshot()) >= 3
	})
	for _, n := range nodes {
		_ = n.s.Close()
	}
	runs := l.snapshot()
	checkOnce(t, runs)
	sort.Slice(runs, func(a, b int) bool { return runs[a].start.Before(runs[b].start) })
	for i := 1; i < len(runs); i++ {
		if runs[i].start.Before(runs[i-1].end) {
			t.Errorf("%s started at %v while %s still ran (until %v)", runs[i].key(), runs[i].start, runs[i-1].key(), runs[i-1].end)
		}
	}
	recs := records(t, nodes[0].store, "slow")
	skipped := 0
	for k, rec := range recs {
		if rec.State == StateSkipped {
			skipped++
			if !strings.HasPrefix(rec.Reason, "overlap with slow.") {
				t.Errorf("skipped record %s reason %q", k, rec.Reason)
			}
		}
	}
	if skipped < 2 {
		t.Fatalf("%d skipped records, want at least 2: %v", skipped, recs)
	}
	waitFor(t, "skipped events", 5*time.Second, func() bool { return len(ev.of(EventSkipped)) == skipped })
	e := ev.of(EventSkipped)[0]
	if e.Kind != "job" || e.Name != "slow" || e.Token == 0 || !strings.Contains(e.Reason, "overlap") {
		t.Errorf("skipped event = %+v", e)
	}
	t.Logf("%d runs, %d ticks skipped", len(runs), skipped)
}

func TestOverlapAllow(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	var l ledger
	var mu sync.Mutex
	cur, peak := 0, 0
	slow := func(ctx context.Context, _ Tick) error {
		mu.Lock()
		cur++
		peak = max(peak, cur)
		mu.Unlock()
		defer func() { mu.Lock(); cur--; mu.Unlock() }()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2500 * time.Millisecond):
			return nil
		}
	}
	var nodes []*node
	for _, name := range []string{"a", "b"} {
		nodes = append(nodes, startNode(t, srv, name, testOpts(), func(s *Scheduler) {
			mustAdd(t, s, "slow", "* * * * * *", l.fn(name, slow), WithOverlap(Allow))
		}))
	}
	waitFor(t, "5 ticks", 20*time.Second, func() bool { return l.ticks() >= 5 })
	for _, n := range nodes {
		_ = n.s.Close()
	}
	by := checkOnce(t, l.snapshot())
	checkNoGaps(t, "slow", by, records(t, nodes[0].store, "slow"))
	mu.Lock()
	defer mu.Unlock()
	if peak < 2 {
		t.Fatalf("at most %d runs at once, want overlapping runs", peak)
	}
	t.Logf("%d ticks, up to %d runs at once", len(by), peak)
}

// Under Replace each tick stops the run before it — also on the other node — and starts
// once that run has ended.
func TestOverlapReplace(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	var l ledger
	forever := func(ctx context.Context, _ Tick) error {
		<-ctx.Done()
		return context.Cause(ctx)
	}
	var nodes []*node
	for _, name := range []string{"a", "b"} {
		nodes = append(nodes, startNode(t, srv, name, testOpts(), func(s *Scheduler) {
			mustAdd(t, s, "long", "* * * * * *", l.fn(name, forever), WithOverlap(Replace))
		}))
	}
	waitFor(t, "5 runs", 20*time.Second, func() bool { return len(l.snapshot()) >= 5 })
	for _, n := range nodes {
		_ = n.s.Close()
	}
	runs := l.snapshot()
	checkOnce(t, runs)
	sort.Slice(runs, func(a, b int) bool { return runs[a].start.Before(runs[b].start) })
	recs := records(t, nodes[0].store, "long")
	crossNode := 0
	for i := 0; i+1 < len(runs); i++ {
		old, next := runs[i], runs[i+1]
		if !errors.Is(old.cause, ErrReplaced) {
			t.Errorf("run %s ended with %v, want ErrReplaced", old.key(), old.cause)
		}
		if next.start.Before(old.end) {
			t.Errorf("%s started before %s ended", next.key(), old.key())
		}
		if old.node != next.node {
			crossNode++
		}
		rec := recs[old.key()]
		if rec.State != StateFailed || !strings.HasPrefix(rec.Reason, "replaced by long.") {
			t.Errorf("record of replaced run %s: state %q reason %q", old.key(), rec.State, rec.Reason)
		}
	}
	t.Logf("%d runs, %d replaced across nodes", len(runs), crossNode)
	logDelays(t, "replace (old run stops first)", runs)
}

// offsetClock is the real clock shifted by an offset that a test moves forward, to
// simulate an outage without waiting for it.
type offsetClock struct {
	lease.RealClock
	mu  sync.Mutex
	off time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *offsetClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// The whole cluster is down for ten ticks. On restart, the missed ticks are recorded missed
// and run per the catch-up policy.
func TestCatchUpAfterOutage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		policy CatchUp
		limit  int
		runs   int // catch-up runs expected
	}{
		{None, 0, 0},
		{Last, 0, 1},
		{All, 3, 3},
	}
	for _, tc := range cases {
		t.Run(tc.policy.String(), func(t *testing.T) {
			t.Parallel()
			srv := natstest.Run(t)
			ev := subscribeEvents(t, srv, "report")
			clk := &offsetClock{}
			var l ledger
			start := func(name string) *node {
				return startNode(t, srv, name, testOpts(WithClock(clk)), func(s *Scheduler) {
					// Allow: under Skip a catch-up run that meets a late tick's run at
					// restart is skipped, as any overlapping run is; that is not tested here.
					mustAdd(t, s, "report", "@every 1s", l.fn(name, nil), WithCatchUp(tc.policy, tc.limit), WithOverlap(Allow))
				})
			}
			a, b := start("a"), start("b")
			waitFor(t, "2 ticks", 10*time.Second, func() bool { return l.ticks() >= 2 })
			_ = a.s.Close()
			_ = b.s.Close()
			var lastBefore int64
			for _, r := range l.snapshot() {
				lastBefore = max(lastBefore, r.tick.Time.Unix())
			}
			before := len(l.snapshot())

			clk.advance(10 * time.Second)
			restart := clk.Now()
			a2, b2 := start("a2"), start("b2")
			// Every tick up to the miss window before the restart gets a final record.
			upto := restart.Add(-testMissAfter).Unix()
			waitFor(t, "records of the outage", 15*time.Second, func() bool {
				recs := records(t, a2.store, "report")
				for s := lastBefore + 1; s <= upto; s++ {
					r, ok := recs[tickKey("report", time.Unix(s, 0), false)]
					if !ok || !finalState(r.State) {
						return false
					}
				}
				return true
			})
			_ = a2.s.Close()
			_ = b2.s.Close()

			recs := records(t, a2.store, "report")
			by := checkOnce(t, l.snapshot())
			var missed, caught []int64
			for k, r := range recs {
				switch {
				case r.State == StateMissed:
					missed = append(missed, r.Tick.Unix())
					if _, ran := by[k]; ran {
						t.Errorf("missed tick %s ran", k)
					}
				case r.Reason == "catch-up":
					caught = append(caught, r.Tick.Unix())
					if r.State != StateSucceeded || len(by[k]) != 1 {
						t.Errorf("catch-up tick %s: state %s, %d runs", k, r.State, len(by[k]))
					}
				}
			}
			sort.Slice(missed, func(i, j int) bool { return missed[i] < missed[j] })
			sort.Slice(caught, func(i, j int) bool { return caught[i] < caught[j] })
			all := append(append([]int64(nil), missed...), caught...)
			sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
			t.Logf("last tick before the outage %d, restart at %d: missed %v, caught up %v (%d runs before, %d in all)",
				lastBefore, restart.Unix(), missed, caught, before, len(l.snapshot()))
			if len(all) < 7 || all[0] != lastBefore+1 || all[len(all)-1] < upto {
				t.Fatalf("outage ticks %v, want every second from %d to at least %d", all, lastBefore+1, upto)
			}
			for i := 1; i < len(all); i++ {
				if all[i] != all[i-1]+1 {
					t.Errorf("outage tick %d has neither a missed record nor a catch-up run", all[i-1]+1)
				}
			}
			if len(caught) != tc.runs {
				t.Fatalf("%d catch-up runs, want %d", len(caught), tc.runs)
			}
			// The most recent missed ticks run, oldest first, one after the other.
			for i, s := range caught {
				if want := all[len(all)-len(caught)+i]; s != want {
					t.Errorf("catch-up ran tick %d, want %d", s, want)
				}
			}
			var catchUpRuns []ran
			for _, r := range l.snapshot() {
				if containsSec(caught, r.tick.Time.Unix()) {
					catchUpRuns = append(catchUpRuns, r)
				}
			}
			sort.Slice(catchUpRuns, func(i, j int) bool { return catchUpRuns[i].start.Before(catchUpRuns[j].start) })
			for i := 1; i < len(catchUpRuns); i++ {
				if catchUpRuns[i].tick.Time.Before(catchUpRuns[i-1].tick.Time) || catchUpRuns[i].start.Before(catchUpRuns[i-1].end) {
					t.Errorf("catch-up runs out of order or overlapping: %v then %v", catchUpRuns[i-1].key(), catchUpRuns[i].key())
				}
			}
			waitFor(t, "missed events", 5*time.Second, func() bool { return len(ev.of(EventMissed)) == len(missed) })
		})
	}
}

// A node's connection drops mid-run: another node records the run lost when its lease
// runs out and, with WithRetryLost, runs it again as attempt 2. The first run was
// cancelled (at its renew deadline) before the retry started.
func TestLostRunIsRetried(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	ev := subscribeEvents(t, srv, "import")
	var l ledger
	body := func(ctx context.Context, tick Tick) error {
		if tick.Attempt == 1 {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	var nodes []*node
	for _, name := range []string{"a", "b", "c"} {
		nodes = append(nodes, startNode(t, srv, name, testOpts(), func(s *Scheduler) {
			mustAdd(t, s, "import", "0 0 0 1 1 *", l.fn(name, body), WithRetryLost(true))
		}))
	}
	tick, err := nodes[0].s.Trigger(context.Background(), "import")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the run on a", 5*time.Second, func() bool { return len(l.snapshot()) == 1 })
	cut := time.Now()
	nodes[0].nc.Close()
	waitFor(t, "attempt 2", 15*time.Second, func() bool { return len(l.snapshot()) == 2 })
	runs := l.snapshot()
	first, retry := runs[0], runs[1]
	if retry.node == "a" || retry.tick.Attempt != 2 || retry.tick.Time.Unix() != tick.Time.Unix() || retry.tick.Token <= tick.Token || !retry.tick.Manual {
		t.Fatalf("retry = %+v (first token %d)", retry, tick.Token)
	}
	waitFor(t, "a's run to end", 5*time.Second, func() bool { return !l.snapshot()[0].end.IsZero() })
	first = l.snapshot()[0]
	if !errors.Is(first.cause, ErrLeaseExpired) {
		t.Errorf("a's run ended with %v, want ErrLeaseExpired", first.cause)
	}
	if first.end.After(retry.start) {
		t.Errorf("the retry started at %v before a's run ended at %v", retry.start, first.end)
	}
	k := tickKey("import", tick.Time, true)
	waitFor(t, "retry recorded", 5*time.Second, func() bool {
		r := records(t, nodes[1].store, "import")[k]
		return r.State == StateSucceeded && r.Attempt == 2
	})
	waitFor(t, "lost event", 5*time.Second, func() bool {
		for _, e := range ev.of(EventFailed) {
			if strings.HasPrefix(e.Reason, "lost") && e.Token == tick.Token {
				return true
			}
		}
		return false
	})
	t.Logf("a cut off: its run cancelled after %v, retried on %s after %v", first.end.Sub(cut).Round(time.Millisecond),
		retry.node, retry.start.Sub(cut).Round(time.Millisecond))
}

func TestLostRunWithoutRetry(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	var l ledger
	block := func(ctx context.Context, _ Tick) error { <-ctx.Done(); return ctx.Err() }
	var nodes []*node
	for _, name := range []string{"a", "b"} {
		nodes = append(nodes, startNode(t, srv, name, testOpts(), func(s *Scheduler) {
			mustAdd(t, s, "import", "0 0 0 1 1 *", l.fn(name, block))
		}))
	}
	tick, err := nodes[0].s.Trigger(context.Background(), "import")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the run on a", 5*time.Second, func() bool { return len(l.snapshot()) == 1 })
	cut := time.Now()
	nodes[0].nc.Close()
	k := tickKey("import", tick.Time, true)
	var rec Run
	waitFor(t, "the run recorded lost", 15*time.Second, func() bool {
		rec = records(t, nodes[1].store, "import")[k]
		return rec.State == StateLost
	})
	t.Logf("recorded lost %v after the cut: %s", time.Since(cut).Round(time.Millisecond), rec.Error)
	if rec.Node != "a" || rec.Token != tick.Token || rec.Reason != "lease expired" {
		t.Errorf("lost record = %+v", rec)
	}
	time.Sleep(testLease) // letting time pass is the point: nothing else may run
	if n := len(l.snapshot()); n != 1 {
		t.Fatalf("%d runs, want 1 (no retry)", n)
	}
}

func TestTriggerRunsOnce(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	var l ledger
	release := make(chan struct{})
	hold := func(ctx context.Context, _ Tick) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}
	a := startNode(t, srv, "a", testOpts(), func(s *Scheduler) { mustAdd(t, s, "manual", "0 0 0 1 1 *", l.fn("a", hold)) })
	b := startNode(t, srv, "b", testOpts(), func(s *Scheduler) { mustAdd(t, s, "manual", "0 0 0 1 1 *", l.fn("b", hold)) })
	ctx := context.Background()
	tick, err := b.s.Trigger(ctx, "manual")
	if err != nil {
		t.Fatal(err)
	}
	if !tick.Manual || tick.Node != "b" || tick.Attempt != 1 || tick.Token == 0 {
		t.Fatalf("tick = %+v", tick)
	}
	waitFor(t, "the manual run", 5*time.Second, func() bool { return len(l.snapshot()) == 1 })
	// While it runs, a second trigger is skipped (overlap Skip), on any node.
	waitFor(t, "a to see the run", 5*time.Second, func() bool {
		st, _ := a.s.Jobs(ctx)
		return len(st) == 1 && len(st[0].Running) == 1
	})
	if _, err := a.s.Trigger(ctx, "manual"); !errors.Is(err, ErrSkipped) {
		t.Fatalf("second Trigger = %v, want ErrSkipped", err)
	}
	close(release)
	waitFor(t, "the run recorded", 5*time.Second, func() bool {
		r := records(t, a.store, "manual")[tickKey("manual", tick.Time, true)]
		return r.State == StateSucceeded
	})
	if n := len(l.snapshot()); n != 1 {
		t.Fatalf("%d runs, want 1", n)
	}
	st, err := a.s.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Last == nil || st[0].Next.IsZero() || st[0].Spec != "0 0 0 1 1 *" || st[0].TimeZone != "UTC" {
		t.Fatalf("Jobs() = %+v", st[0])
	}
	if _, err := a.s.Trigger(ctx, "nope"); !errors.Is(err, ErrUnknownJob) {
		t.Fatalf("Trigger(nope) = %v", err)
	}
}

func TestRemoveCancelsRuns(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	var l ledger
	block := func(ctx context.Context, _ Tick) error { <-ctx.Done(); return ctx.Err() }
	a := startNode(t, srv, "a", testOpts(), func(s *Scheduler) { mustAdd(t, s, "job", "0 0 0 1 1 *", l.fn("a", block)) })
	tick, err := a.s.Trigger(context.Background(), "job")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the run", 5*time.Second, func() bool { return len(l.snapshot()) == 1 })
	if err := a.s.Remove(context.Background(), "job"); err != nil {
		t.Fatal(err)
	}
	if r := l.snapshot()[0]; !errors.Is(r.cause, ErrRemoved) || r.end.IsZero() {
		t.Fatalf("run after Remove = %+v", r)
	}
	rec := records(t, a.store, "job")[tickKey("job", tick.Time, true)]
	if rec.State != StateLost || rec.Reason != "removed" {
		t.Fatalf("record = %+v", rec)
	}
	if err := a.s.Remove(context.Background(), "job"); !errors.Is(err, ErrUnknownJob) {
		t.Fatalf("second Remove = %v", err)
	}
	if st, _ := a.s.Jobs(context.Background()); len(st) != 0 {
		t.Fatalf("Jobs() after Remove = %+v", st)
	}
}

// Bad schedules, zones and policies are refused with the job's name and the reason; the
// jobs already added keep running.
func TestAddRejectsBadInput(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	var l ledger
	a := startNode(t, srv, "a", testOpts(), func(s *Scheduler) { mustAdd(t, s, "good", "@every 1s", l.fn("a", nil)) })
	noop := func(context.Context, Tick) error { return nil }
	tests := []struct {
		name, spec string
		opts       []JobOption
		kind       error
		want       string
	}{
		{"report", "61 * * * *", nil, ErrInvalidSchedule, `scheduler: job "report": invalid schedule "61 * * * *": minute field "61": end of range (61) above maximum (59)`},
		{"report", "@every 100ms", nil, ErrInvalidSchedule, `job "report": invalid schedule "@every 100ms": the shortest interval is 1s`},
		{"report", "TZ=Europe/Berlin 0 * * * *", nil, ErrInvalidSchedule, "WithTimeZone"},
		{"report", "0 * * * *", []JobOption{WithTimeZone("Mars/Olympus")}, ErrInvalidTimeZone, `scheduler: job "report": unknown time zone "Mars/Olympus"`},
		{"report", "0 * * * *", []JobOption{WithTimeZone("Local")}, ErrInvalidTimeZone, "differ between nodes"},
		{"report", "0 * * * *", []JobOption{WithTimeZone(time.Local)}, ErrInvalidTimeZone, "differ between nodes"},
		{"report", "0 * * * *", []JobOption{WithOverlap(Overlap(9))}, ErrInvalidPolicy, `scheduler: job "report": invalid overlap policy Overlap(9)`},
		{"report", "0 * * * *", []JobOption{WithCatchUp(CatchUp(0), 1)}, ErrInvalidPolicy, "invalid catch-up policy"},
		{"report", "0 * * * *", []JobOption{WithCatchUp(All, 0)}, ErrInvalidPolicy, "catch-up All needs a limit"},
		{"report", "0 * * * *", []JobOption{WithTimeout(-time.Second)}, ErrInvalidOption, "timeout -1s is negative"},
		{"a b", "0 * * * *", nil, kv.ErrInvalidName, "' ' (space) is not allowed"},
		{"good", "0 * * * *", nil, ErrJobExists, `"good"`},
	}
	for _, tt := range tests {
		err := a.s.Add(tt.name, tt.spec, noop, tt.opts...)
		if err == nil || !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Add(%q, %q) = %v, want %v containing %q", tt.name, tt.spec, err, tt.kind, tt.want)
		}
	}
	if err := a.s.Add("berlin", "30 2 * * *", noop, WithTimeZone("Europe/Berlin")); err != nil {
		t.Errorf("Add with a zone name: %v", err)
	}
	if _, err := ParseOverlap("queue"); !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), "use skip, allow or replace") {
		t.Errorf("ParseOverlap(queue) = %v", err)
	}
	if p, err := ParseCatchUp("all"); err != nil || p != All {
		t.Errorf("ParseCatchUp(all) = %v, %v", p, err)
	}
	n := l.ticks()
	waitFor(t, "the good job to keep running", 10*time.Second, func() bool { return l.ticks() >= n+2 })
}

// Pin the documented defaults, so that doc and code cannot drift.
func TestDefaults(t *testing.T) {
	srv := natstest.Run(t)
	st := openStore(t, srv.Connect())
	s, err := New(st, "a", WithoutEvents())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.opts.takeoverDelay != 2*time.Second || s.opts.missAfter != 10*time.Second {
		t.Errorf("defaults: takeover %v, miss-after %v", s.opts.takeoverDelay, s.opts.missAfter)
	}
	if s.timing != lease.DefaultTiming() || MaxAttempts != 3 {
		t.Errorf("run lease timings %+v, max attempts %d", s.timing, MaxAttempts)
	}
	if _, ok := s.opts.placement.(everyNode); !ok {
		t.Errorf("default placement %T", s.opts.placement)
	}
	if err := s.Add("j", "@hourly", func(context.Context, Tick) error { return nil }); err != nil {
		t.Fatal(err)
	}
	j := s.jobs["j"]
	if j.opts.overlap != Skip || j.opts.catchUp != None || j.opts.loc != time.UTC || j.opts.timeout != 0 || j.opts.retryLost {
		t.Errorf("job defaults %+v", j.opts)
	}
	for _, bad := range [][]Option{
		{WithTakeoverDelay(10 * time.Second)},
		{WithRunLease(500 * time.Millisecond)},
		{WithTiming(lease.Timing{TTL: 15 * time.Second, FenceGrace: 6 * time.Second})},
		{WithLogger(nil)},
	} {
		if _, err := New(st, "a", bad...); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("New with a bad option = %v, want ErrInvalidOption", err)
		}
	}
	if _, err := New(st, "a b"); !errors.Is(err, kv.ErrInvalidName) {
		t.Errorf("New(\"a b\") = %v", err)
	}
	_ = s.Close()
	_ = s.Close()
	if err := s.Add("k", "@hourly", func(context.Context, Tick) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close = %v", err)
	}
}

// A node shuts down mid-run: the run is cancelled (ErrClosed), recorded lost, and another
// node runs it again at once — it need not wait for a lease to run out.
func TestShutdownMidRunIsRetried(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	var l ledger
	body := func(ctx context.Context, tick Tick) error {
		if tick.Attempt == 1 {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	var nodes []*node
	for _, name := range []string{"a", "b"} {
		nodes = append(nodes, startNode(t, srv, name, testOpts(), func(s *Scheduler) {
			mustAdd(t, s, "import", "0 0 0 1 1 *", l.fn(name, body), WithRetryLost(true))
		}))
	}
	tick, err := nodes[0].s.Trigger(context.Background(), "import")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the run on a", 5*time.Second, func() bool { return len(l.snapshot()) == 1 })
	closed := time.Now()
	_ = nodes[0].s.Close()
	if r := l.snapshot()[0]; !errors.Is(r.cause, ErrClosed) {
		t.Fatalf("a's run ended with %v, want ErrClosed", r.cause)
	}
	waitFor(t, "attempt 2 on b", 10*time.Second, func() bool { return len(l.snapshot()) == 2 })
	retry := l.snapshot()[1]
	if retry.node != "b" || retry.tick.Attempt != 2 || retry.tick.Token <= tick.Token {
		t.Fatalf("retry = %+v", retry)
	}
	t.Logf("retried on b %v after a closed", retry.start.Sub(closed).Round(time.Millisecond))
}

// NATS itself goes away for several ticks and comes back with its data. The nodes give the
// ticks up after the miss window and, once NATS answers again, a catch-up pass records them
// missed and runs the last one (policy Last).
func TestCatchUpAfterNATSOutage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := natstest.RunWithDir(t, dir, -1)
	port := srv.Port()
	var l ledger
	var nodes []*node
	for _, name := range []string{"a", "b"} {
		nodes = append(nodes, startNode(t, srv, name, testOpts(), func(s *Scheduler) {
			mustAdd(t, s, "sync", "@every 1s", l.fn(name, nil), WithCatchUp(Last, 0), WithOverlap(Allow))
		}))
	}
	waitFor(t, "2 ticks", 10*time.Second, func() bool { return l.ticks() >= 2 })
	srv.Stop()
	down := time.Now()
	var lastBefore int64
	for _, r := range l.snapshot() {
		lastBefore = max(lastBefore, r.tick.Time.Unix())
	}
	time.Sleep(5 * time.Second) // the outage is the point of the test
	natstest.RunWithDir(t, dir, port)
	up := time.Now()
	// Wait for a tick that ran on schedule after the outage, and for records of every tick
	// from the outage up to it.
	var recs map[string]Run
	var firstAfter int64
	waitFor(t, "ticks after the outage and records of the ones in it", 20*time.Second, func() bool {
		runs := l.snapshot() // before the records, so that every run here has its record
		recs = records(t, nodes[0].store, "sync")
		firstAfter = 0
		for _, r := range runs {
			// The first tick claimed by the tick loop after the outage; the client reconnects
			// up to 2 s after the server is back, so the catch-up run may be newer than up.
			if s := r.tick.Time.Unix(); r.start.After(up) && s > up.Unix()-1 && recs[r.key()].Reason != "catch-up" &&
				(firstAfter == 0 || s < firstAfter) {
				firstAfter = s
			}
		}
		if firstAfter == 0 {
			return false
		}
		for s := lastBefore + 1; s < firstAfter; s++ {
			if r, ok := recs[tickKey("sync", time.Unix(s, 0), false)]; !ok || !finalState(r.State) {
				return false
			}
		}
		return true
	})
	for _, n := range nodes {
		_ = n.s.Close()
	}
	checkOnce(t, l.snapshot())
	var missed, caught, late []int64
	for s := lastBefore + 1; s < firstAfter; s++ {
		r := recs[tickKey("sync", time.Unix(s, 0), false)]
		switch {
		case r.State == StateMissed:
			missed = append(missed, s)
		case r.Reason == "catch-up":
			caught = append(caught, s)
		default:
			late = append(late, s) // claimed late, within the miss window, after NATS came back
		}
	}
	t.Logf("NATS down %v: ticks %d..%d: missed %v, caught up %v, late %v", up.Sub(down).Round(100*time.Millisecond),
		lastBefore+1, firstAfter-1, missed, caught, late)
	if len(missed) < 1 || len(caught) != 1 || caught[0] < missed[len(missed)-1] {
		for s := lastBefore - 1; s <= firstAfter+2; s++ {
			r := recs[tickKey("sync", time.Unix(s, 0), false)]
			t.Logf("tick %d: %s %s on %s, claimed %v", s, r.State, r.Reason, r.Node, r.Claimed.Format("05.000"))
		}
		t.Fatalf("want missed ticks and one catch-up run of the newest missed tick")
	}
}
