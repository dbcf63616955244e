package ownership

import (
	"context"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/natstest"
)

// runsOf returns how many times each name has been started so far.
func (f *fleet) runsOf(names []string) map[string]int {
	out := make(map[string]int, len(names))
	for _, n := range names {
		out[n] = len(f.of(n).snapshot())
	}
	return out
}

// holdStill fails the test if any name is started again within d (placement moved it).
func (f *fleet) holdStill(t *testing.T, names []string, d time.Duration, what string) {
	t.Helper()
	before := f.runsOf(names)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for n, c := range f.runsOf(names) {
			if c != before[n] {
				l := f.of(n).snapshot()
				t.Fatalf("%s: worker %s moved again (%d runs, now on %s)", what, n, c, l[len(l)-1].node)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settle waits until no name has been started again for quiet.
func (f *fleet) settle(t *testing.T, names []string, quiet, timeout time.Duration) {
	t.Helper()
	last := f.runsOf(names)
	since := time.Now()
	waitFor(t, "placement to settle", timeout, func() bool {
		cur := f.runsOf(names)
		for n, c := range cur {
			if c != last[n] {
				last, since = cur, time.Now()
				return false
			}
		}
		return time.Since(since) >= quiet
	})
}

// A crashed node's workers move once, to the survivors, and stay there: neither the dead
// node's record going stale nor its expiry moves anything again (issue 14).
func TestCrashedNodeRecordMovesNothing(t *testing.T) {
	srv := natstest.Run(t)
	ws := names(60)
	f := newFleet()
	cfg := ConfigForTTL(testTTL)
	nodes := startTogether(t, srv, cfg, func(n string) func(*Engine) { return f.register(ws, n) }, "a", "b", "c")
	waitFor(t, "all running", 30*time.Second, func() bool { _, n := f.perNode(t, ws); return n == len(ws) })
	f.settle(t, ws, cfg.RebalanceDelay+cfg.ClaimGrace+cfg.RenewInterval, 30*time.Second)
	before, _ := f.perNode(t, ws)
	onC := 0
	for _, n := range ws {
		if l := f.of(n).running(); len(l) == 1 && l[0].node == "c" {
			onC++
		}
	}
	if onC == 0 {
		t.Fatalf("c runs nothing: %v", before)
	}
	runsBefore := f.runsOf(ws)
	nodes[2].nc.Close() // c crashes: no release, its record stays until it expires
	waitFor(t, "survivors to run everything", 10*testTTL, func() bool {
		c, n := f.perNode(t, ws)
		return n == len(ws) && c["c"] == 0
	})
	// c's record has expired by now or will within a renew interval; wait past that and a
	// rebalance: nothing may move a second time.
	f.holdStill(t, ws, cfg.TTL+cfg.RebalanceDelay+cfg.ClaimGrace+cfg.RenewInterval, "after the crash")
	runs := f.runsOf(ws)
	for _, n := range ws {
		if runs[n] > runsBefore[n]+1 {
			t.Errorf("%s started %d times after the crash", n, runs[n]-runsBefore[n])
		}
	}
	after, _ := f.perNode(t, ws)
	t.Logf("before %v, after %v", before, after)
	f.checkNoOverlap(t, ws)
}

// A released worker goes to another node before the claim grace ends, and stays there.
func TestReleaseGoesElsewhereAndStays(t *testing.T) {
	srv := natstest.Run(t)
	w := nameFor("w", "a", "a", "b", "c")
	f := newFleet()
	cfg := ConfigForTTL(testTTL)
	cfg.ClaimGrace = 3 * time.Second // a bound the handoff must beat by far
	a := startNode(t, srv, "a", cfg, f.register([]string{w}, "a"))
	waitFor(t, "a to run w", 5*time.Second, func() bool { l := f.of(w).running(); return len(l) == 1 })
	startNode(t, srv, "b", cfg, f.register([]string{w}, "b"))
	startNode(t, srv, "c", cfg, f.register([]string{w}, "c"))
	waitFor(t, "three members", 5*time.Second, func() bool { return len(a.e.Members()) == 3 })
	f.holdStill(t, []string{w}, cfg.RebalanceDelay+cfg.RenewInterval, "before the release")
	start := time.Now()
	if err := a.e.Release(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	var to string
	waitFor(t, "another node to run w", cfg.ClaimGrace, func() bool {
		l := f.of(w).running()
		if len(l) == 1 && l[0].node != "a" {
			to = l[0].node
			return true
		}
		return false
	})
	t.Logf("released by a, running on %s after %v", to, time.Since(start).Round(time.Millisecond))
	// a holds off for ClaimGrace + RenewInterval; then a rebalance could pull it back.
	f.holdStill(t, []string{w}, cfg.ClaimGrace+cfg.RenewInterval+cfg.RebalanceDelay+cfg.RenewInterval, "after the release")
	f.checkNoOverlap(t, []string{w})
}

// A single worker does not follow a node that leaves and comes back.
func TestSingletonStaysWhenNodeRejoins(t *testing.T) {
	srv := natstest.Run(t)
	w := nameFor("w", "b", "a", "b")
	f := newFleet()
	cfg := ConfigForTTL(testTTL)
	b := startNode(t, srv, "b", cfg, f.register([]string{w}, "b"))
	waitFor(t, "b to run w", 10*time.Second, func() bool { l := f.of(w).running(); return len(l) == 1 && l[0].node == "b" })
	startNode(t, srv, "a", cfg, f.register([]string{w}, "a"))
	if err := b.e.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to run w", testTTL, func() bool { l := f.of(w).running(); return len(l) == 1 && l[0].node == "a" })
	startNode(t, srv, "b", cfg, f.register([]string{w}, "b"))
	f.holdStill(t, []string{w}, cfg.RebalanceDelay+cfg.ClaimGrace+2*cfg.RenewInterval, "after b rejoined")
	f.checkNoOverlap(t, []string{w})
}

// On a single node a released worker comes back at once: no other node can take it.
func TestReleaseOnSingleNodeComesBack(t *testing.T) {
	srv := natstest.Run(t)
	f := newFleet()
	cfg := ConfigForTTL(testTTL)
	cfg.ClaimGrace = 3 * time.Second
	a := startNode(t, srv, "a", cfg, f.register([]string{"w"}, "a"))
	waitFor(t, "a to run w", 5*time.Second, func() bool { return len(f.of("w").running()) == 1 })
	if err := a.e.Release(context.Background(), "w"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to run w again", cfg.ClaimGrace, func() bool {
		return len(f.of("w").snapshot()) == 2 && len(f.of("w").running()) == 1
	})
	f.checkNoOverlap(t, []string{"w"})
}

// Released workers stay off the node that released them even when that empties it: the
// rebalance that follows gives it other workers, not the released ones back (issue 14: in
// the release bench, 1 of 10 released workers came back once the releasing node's hold-off
// ended).
func TestReleasedWorkersDoNotBounceBack(t *testing.T) {
	srv := natstest.Run(t)
	ws := names(6)
	f := newFleet()
	cfg := ConfigForTTL(testTTL)
	nodes := startTogether(t, srv, cfg, func(n string) func(*Engine) { return f.register(ws, n) }, "a", "b", "c")
	waitFor(t, "all running", 30*time.Second, func() bool { _, n := f.perNode(t, ws); return n == len(ws) })
	f.settle(t, ws, cfg.RebalanceDelay+cfg.ClaimGrace+cfg.RenewInterval, 30*time.Second)
	a := nodes[0]
	var released []string
	for _, n := range ws {
		if l := f.of(n).running(); len(l) == 1 && l[0].node == "a" {
			released = append(released, n)
		}
	}
	if len(released) == 0 || len(released) > 3 {
		t.Fatalf("a runs %d workers after settling", len(released))
	}
	runsAt := map[string]int{} // runs of each released name when it was released
	for _, n := range released {
		runsAt[n] = len(f.of(n).snapshot())
		if err := a.e.Release(context.Background(), n); err != nil {
			t.Fatal(err)
		}
		waitFor(t, n+" to run elsewhere", cfg.ClaimGrace, func() bool {
			l := f.of(n).running()
			return len(l) == 1 && l[0].node != "a"
		})
	}
	// a runs nothing now: far below its share, so the others hand it workers — not the
	// ones it released.
	waitFor(t, "a to be given workers", 4*(cfg.RebalanceDelay+cfg.ClaimGrace+cfg.RenewInterval), func() bool {
		c, n := f.perNode(t, ws)
		return n == len(ws) && c["a"] > 0
	})
	f.settle(t, ws, cfg.RebalanceDelay+cfg.ClaimGrace+2*cfg.RenewInterval, time.Minute)
	// Straight back is the bounce. (A worker the next node must shed again can still reach
	// a on a third move, when that node holds more moved workers than its share.)
	for _, n := range released {
		if l := f.of(n).snapshot(); len(l) > runsAt[n]+1 && l[runsAt[n]+1].node == "a" {
			t.Errorf("released worker %s came straight back to a (runs: %v)", n, l)
		}
	}
	c, _ := f.perNode(t, ws)
	t.Logf("released %v from a; now %v", released, c)
	f.checkNoOverlap(t, ws)
}
