package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetcoord/coordinator/internal/cluster"
	"github.com/jetcoord/coordinator/internal/natstest"
)

// checkNoOverlap fails if two runs of the job were in the function at the same time, on
// one node or across nodes; it returns how many pairs overlapped and by how much at most.
func checkNoOverlap(t *testing.T, runs []ran) {
	t.Helper()
	sort.Slice(runs, func(a, b int) bool { return runs[a].start.Before(runs[b].start) })
	for i := range runs {
		for k := i + 1; k < len(runs); k++ {
			a, b := runs[i], runs[k]
			if a.end.IsZero() || b.start.Before(a.end) {
				end := "still running"
				if !a.end.IsZero() {
					end = "ended " + a.end.Sub(b.start).Round(time.Millisecond).String() + " later"
				}
				t.Errorf("two copies: %s attempt %d on %s started while %s attempt %d on %s ran (%s)",
					b.key(), b.tick.Attempt, b.node, a.key(), a.tick.Attempt, a.node, end)
			}
		}
	}
}

// deleteByHand removes a key the way `nats kv del` does: no revision check.
func deleteByHand(t *testing.T, srv *natstest.Server, key string) {
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
	if err := b.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
}

// An operator deletes a live run lease by hand (issue 12, case 3 for the scheduler). The
// delete marker must not tell the other nodes that the run is gone: with WithRetryLost
// the tick runs again only once the first run has stopped — its node noticed the loss at
// its next renewal and the function returned.
func TestHandDeletedRunLeaseStartsNoSecondCopy(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	var l ledger
	body := func(ctx context.Context, tick Tick) error {
		if tick.Attempt == 1 {
			<-ctx.Done()
			time.Sleep(100 * time.Millisecond) // cleanup, within FenceGrace (0.2s)
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
	key := tickKey("import", tick.Time, true)
	// Wait until b has seen the lease renewed at least once, as running.
	var seen uint64
	waitFor(t, "b to see a renewal of the run lease", 10*time.Second, func() bool {
		j := nodes[1].s.jobs["import"]
		j.mu.Lock()
		v, ok := j.leases[key]
		j.mu.Unlock()
		if !ok || v.rec.State != leaseRunning {
			return false
		}
		if seen == 0 {
			seen = v.rev
		}
		return v.rev > seen
	})
	deleted := time.Now()
	deleteByHand(t, srv, leaseKeyOf(key))
	waitFor(t, "attempt 2", 20*time.Second, func() bool { return len(l.snapshot()) >= 2 })
	waitFor(t, "attempt 1 to end", 10*time.Second, func() bool { return !l.snapshot()[0].end.IsZero() })
	runs := l.snapshot()
	first, retry := runs[0], runs[1]
	t.Logf("lease deleted by hand: attempt 1 on %s ended after %v (%v), attempt 2 on %s started after %v",
		first.node, first.end.Sub(deleted).Round(time.Millisecond), first.cause, retry.node, retry.start.Sub(deleted).Round(time.Millisecond))
	checkNoOverlap(t, runs)
	if !errors.Is(first.cause, ErrLeaseLost) {
		t.Errorf("attempt 1 ended with %v, want ErrLeaseLost", first.cause)
	}
}

// Under Replace the new run starts only once the old run has stopped, also when stopping
// takes longer than a lease TTL (issue 12, case 6: it started after one TTL regardless).
func TestReplaceWaitsForTheOldRunToStop(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	var l ledger
	slowStop := func(ctx context.Context, _ Tick) error {
		<-ctx.Done()
		time.Sleep(testLease + 1500*time.Millisecond) // a slow, honest cleanup
		return context.Cause(ctx)
	}
	var nodes []*node
	for _, name := range []string{"a", "b"} {
		nodes = append(nodes, startNode(t, srv, name, testOpts(), func(s *Scheduler) {
			mustAdd(t, s, "long", "*/5 * * * * *", l.fn(name, slowStop), WithOverlap(Replace))
		}))
	}
	waitFor(t, "3 runs", 60*time.Second, func() bool { return len(l.snapshot()) >= 3 })
	for _, n := range nodes {
		_ = n.s.Close()
	}
	runs := l.snapshot()
	checkNoOverlap(t, runs)
	for _, r := range runs {
		t.Logf("%s on %s: %v → %v (%v)", r.key(), r.node, r.start.Format("05.000"), r.end.Format("05.000"), r.cause)
	}
}

// A finished tick's record expires with the job's run history (issue 12, case 6: records
// had no TTL, so a per-second job kept ~600,000 keys for the 7-day retention). The record's
// message carries a per-entry TTL: HistoryTicks periods, at least MinHistory.
func TestFinishedTickRecordsExpire(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	var l ledger
	n := startNode(t, srv, "a", testOpts(), func(s *Scheduler) {
		mustAdd(t, s, "often", "* * * * * *", l.fn("a", nil))
		mustAdd(t, s, "hourly", "@hourly", l.fn("a", nil))
	})
	waitFor(t, "a finished tick", 10*time.Second, func() bool {
		for _, r := range records(t, n.store, "often") {
			if finalState(r.State) {
				return true
			}
		}
		return false
	})
	if _, err := n.s.Trigger(context.Background(), "hourly"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the manual run of hourly to finish", 10*time.Second, func() bool {
		for _, r := range records(t, n.store, "hourly") {
			if finalState(r.State) {
				return true
			}
		}
		return false
	})
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "KV_t_jobs")
	if err != nil {
		t.Fatal(err)
	}
	for job, want := range map[string]time.Duration{"often": MinHistory, "hourly": 100 * time.Hour} {
		for k, r := range records(t, n.store, job) {
			if !finalState(r.State) {
				continue
			}
			m, err := st.GetLastMsgForSubject(ctx, "$KV.t_jobs."+k)
			if err != nil {
				t.Fatal(err)
			}
			ttl := m.Header.Get("Nats-TTL")
			got, _ := time.ParseDuration(ttl)
			if got == 0 {
				if secs, err := time.ParseDuration(ttl + "s"); err == nil {
					got = secs
				}
			}
			if got != want {
				t.Errorf("record %s (%s): Nats-TTL %q, want %v", k, r.State, ttl, want)
			}
		}
	}
}

// WithRetryLost is at-least-once: a run that did all its work but whose node was cut off
// before it could record the end is recorded lost by another node once its lease ran out,
// and runs again (issue 12, case 6). The two runs never overlap. Without WithRetryLost the
// tick would stay recorded lost (TestLostRunWithoutRetry): at most once.
func TestRetryLostIsAtLeastOnce(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	proxy, err := cluster.NewProxy(fmt.Sprintf("127.0.0.1:%d", srv.Port()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	var l ledger
	body := func(ctx context.Context, tick Tick) error {
		if tick.Attempt == 1 {
			proxy.Block() // the work is done; the node is cut off before it records so
		}
		return nil
	}
	add := func(name string) func(*Scheduler) {
		return func(s *Scheduler) {
			mustAdd(t, s, "report", "0 0 0 1 1 *", l.fn(name, body), WithRetryLost(true))
		}
	}
	// a reaches NATS through the proxy, b directly.
	nc, err := nats.Connect(proxy.URL(), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	a, err := New(openStore(t, nc), "a", testOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	add("a")(a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proxy.Unblock()
		_ = a.Close()
	})
	b := startNode(t, srv, "b", testOpts(), add("b"))

	tick, err := a.Trigger(ctx, "report")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "attempt 2", 20*time.Second, func() bool { return len(l.snapshot()) >= 2 })
	runs := l.snapshot()
	first, retry := runs[0], runs[1]
	if first.node != "a" || first.tick.Attempt != 1 || retry.node != "b" || retry.tick.Attempt != 2 || retry.tick.Token <= tick.Token {
		t.Fatalf("runs: %+v then %+v", first, retry)
	}
	checkNoOverlap(t, runs)
	k := tickKey("report", tick.Time, true)
	waitFor(t, "attempt 2 recorded", 5*time.Second, func() bool {
		r := records(t, b.store, "report")[k]
		return r.State == StateSucceeded && r.Attempt == 2
	})
	t.Logf("attempt 1 completed on a at %v, a cut off before recording it; attempt 2 ran on b %v later",
		first.end.Format("05.000"), retry.start.Sub(first.end).Round(time.Millisecond))
}
