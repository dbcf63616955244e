package ownership

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetcoord/coordinator/internal/natstest"
	"github.com/jetcoord/coordinator/kv"
)

// stuckWorker is a worker whose first run ignores its context until unstick is called:
// a Go worker that does not honour cancellation, or a command that outlives its stop.
type stuckWorker struct {
	r       *runs
	once    sync.Once
	stuck   chan struct{}
	release sync.Once
}

func newStuck(r *runs) *stuckWorker { return &stuckWorker{r: r, stuck: make(chan struct{})} }

func (s *stuckWorker) worker(node string) WorkerFunc {
	return func(ctx context.Context, lease *Lease) error {
		first := false
		s.once.Do(func() { first = true })
		s.r.mu.Lock()
		i := len(s.r.list)
		s.r.list = append(s.r.list, run{node: node, token: lease.Token(), start: time.Now()})
		s.r.mu.Unlock()
		<-ctx.Done()
		if first {
			<-s.stuck
		}
		s.r.mu.Lock()
		s.r.list[i].stop = time.Now()
		s.r.list[i].cause = context.Cause(ctx)
		s.r.mu.Unlock()
		return nil
	}
}

func (s *stuckWorker) unstick() { s.release.Do(func() { close(s.stuck) }) }

// claimsBucket binds the workers bucket with a plain client, as `nats kv` does.
func claimsBucket(t *testing.T, srv *natstest.Server) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), "t_workers")
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// Case 1 of issue 12: an operator deletes the live claim of a worker that does not stop.
// The node must not start the worker again while the old copy still runs.
func TestDeletedClaimNoSecondTermOnNode(t *testing.T) {
	for _, op := range []string{"del", "purge"} {
		t.Run(op, func(t *testing.T) {
			srv := natstest.Run(t)
			var r runs
			s := newStuck(&r)
			t.Cleanup(s.unstick)
			w := nameFor("w", "a", "a")
			startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, s.worker("a")) })
			waitFor(t, "a to run w", 5*time.Second, func() bool { return len(r.running()) == 1 })
			kv := claimsBucket(t, srv)
			var err error
			if op == "del" {
				err = kv.Delete(context.Background(), w)
			} else {
				err = kv.Purge(context.Background(), w)
			}
			if err != nil {
				t.Fatal(err)
			}
			// Two TTLs with the old copy stuck: the node must not start a second one.
			deadline := time.Now().Add(2 * testTTL)
			for time.Now().Before(deadline) {
				if n := len(r.snapshot()); n > 1 {
					t.Fatalf("a second run started while the first still ran: %+v", r.snapshot())
				}
				time.Sleep(20 * time.Millisecond)
			}
			s.unstick()
			waitFor(t, "w to run again", 3*testTTL, func() bool { return len(r.running()) == 1 && len(r.snapshot()) == 2 })
			r.checkNoOverlap(t)
		})
	}
}

// Case 3 of issue 12: the owner is cut off and an expiry marker (or a purge, which looks
// the same) arrives early. The contender must wait a TTL on its own clock from the last
// claim it saw, by which time the old owner has fenced.
func TestEarlyExpiryDoesNotSkipTakeoverTimer(t *testing.T) {
	srv := natstest.Run(t)
	var r runs
	w := nameFor("w", "a", "a", "b")
	a := startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, r.worker("a")) })
	waitFor(t, "a to run w", 5*time.Second, func() bool { return len(r.running()) == 1 })
	startNode(t, srv, "b", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, r.worker("b")) })
	kv := claimsBucket(t, srv)
	a.nc.Close() // a is cut off: it fences at its renew deadline, it cannot release
	if err := kv.Purge(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to run w", 3*testTTL, func() bool {
		l := r.running()
		return len(l) == 1 && l[0].node == "b"
	})
	l := r.snapshot()
	if !errors.Is(l[0].cause, ErrLeaseExpired) {
		t.Errorf("a's worker ended with %v, want ErrLeaseExpired", l[0].cause)
	}
	r.checkNoOverlap(t)
}

// Case 2 of issue 12: a worker is registered again (a reload that changes it) while its
// old term's worker outlives ShutdownGrace. The old claim is left to expire, not deleted,
// and the new registration waits for the old worker to return.
func TestReregisterWaitsForOldTerm(t *testing.T) {
	srv := natstest.Run(t)
	var r runs
	s := newStuck(&r)
	t.Cleanup(s.unstick)
	w := nameFor("w", "a", "a")
	cfg := ConfigForTTL(testTTL)
	cfg.ShutdownGrace = 500 * time.Millisecond
	a := startNode(t, srv, "a", cfg, func(e *Engine) { _ = e.Register(w, s.worker("a")) })
	waitFor(t, "a to run w", 5*time.Second, func() bool { return len(r.running()) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.e.Unregister(ctx, w); err != nil {
		t.Fatal(err)
	}
	if err := a.e.Register(w, s.worker("a")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * testTTL)
	for time.Now().Before(deadline) {
		if n := len(r.snapshot()); n > 1 {
			t.Fatalf("the new registration started w while the old term's worker still ran: %+v", r.snapshot())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.unstick()
	waitFor(t, "w to run again", 3*testTTL, func() bool { return len(r.running()) == 1 && len(r.snapshot()) == 2 })
	r.checkNoOverlap(t)
}

// Case 7 of issue 12: Close returns within ShutdownGrace + FenceGrace although a worker
// ignores its context, and names the worker it left behind.
func TestCloseLeavesStuckWorkerBehind(t *testing.T) {
	srv := natstest.Run(t)
	var r runs
	s := newStuck(&r)
	t.Cleanup(s.unstick)
	w := nameFor("w", "a", "a")
	cfg := ConfigForTTL(testTTL)
	cfg.ShutdownGrace = 500 * time.Millisecond
	a := startNode(t, srv, "a", cfg, func(e *Engine) { _ = e.Register(w, s.worker("a")) })
	waitFor(t, "a to run w", 5*time.Second, func() bool { return len(r.running()) == 1 })
	done := make(chan error, 1)
	began := time.Now()
	go func() { done <- a.e.Close() }()
	select {
	case err := <-done:
		t.Logf("Close returned after %v: %v", time.Since(began).Round(time.Millisecond), err)
		if !errors.Is(err, ErrLeftBehind) || !strings.Contains(err.Error(), w) {
			t.Errorf("Close = %v, want ErrLeftBehind naming %s", err, w)
		}
	case <-time.After(cfg.ShutdownGrace + a.e.Config().FenceGrace + 20*time.Second):
		s.unstick()
		<-done
		t.Fatalf("Close did not return with a worker that ignores its context")
	}
	s.unstick()
	waitFor(t, "the stuck worker to return", 5*time.Second, func() bool { return len(r.running()) == 0 })
}

// Case 5 of issue 12: the workers bucket is deleted. The node recreates it, and the next
// term's token is larger than every token before: fencing tokens never go backwards.
func TestDeletedBucketRecreatedAboveTokens(t *testing.T) {
	srv := natstest.Run(t)
	var r runs
	w := nameFor("w", "a", "a")
	startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, r.worker("a")) })
	waitFor(t, "a to run w", 5*time.Second, func() bool { return len(r.running()) == 1 })
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	// Some renewals first, so that the bucket's revisions are ahead of a fresh one's.
	time.Sleep(testTTL) // letting renewals happen is the point, not synchronisation
	if err := js.DeleteKeyValue(context.Background(), "t_workers"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "w to run again", 6*testTTL, func() bool { return len(r.running()) == 1 && len(r.snapshot()) == 2 })
	l := r.snapshot()
	if l[1].token <= l[0].token {
		t.Errorf("token went backwards after the bucket was recreated: %d after %d", l[1].token, l[0].token)
	}
	t.Logf("tokens %d → %d", l[0].token, l[1].token)
	r.checkNoOverlap(t)
}

// A stop under way when the workers bucket is deleted: the claim goes with the bucket, the
// watch starts again (forgetting the revisions seen) and shows nothing for the key. The
// worker is claimed again once its function returned; the node never tries to release the
// old claim at an unknown revision (a chaos run found it retrying that for ever).
func TestBucketDeletedDuringStopClaimsAgain(t *testing.T) {
	srv := natstest.Run(t)
	var r runs
	s := newStuck(&r)
	t.Cleanup(s.unstick)
	w := nameFor("w", "a", "a")
	cfg := ConfigForTTL(testTTL)
	cfg.ShutdownGrace = time.Minute // the stop waits for the function: no abandon
	a := startNode(t, srv, "a", cfg, func(e *Engine) { _ = e.Register(w, s.worker("a")) })
	waitFor(t, "a to run w", 5*time.Second, func() bool { return len(r.running()) == 1 })
	wk := a.e.workers[w]
	released := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		released <- a.e.Release(ctx, w)
	}()
	waitFor(t, "the stop to begin", 5*time.Second, func() bool {
		wk.mu.Lock()
		defer wk.mu.Unlock()
		return wk.t != nil && wk.t.stopping()
	})
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(context.Background(), "t_workers"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the claims watch to start again on the recreated bucket", 6*testTTL, func() bool {
		wk.mu.Lock()
		defer wk.mu.Unlock()
		return wk.obs.rev == 0 && a.e.watching.Load()
	})
	s.unstick()
	if err := <-released; err != nil {
		t.Fatalf("Release: %v", err)
	}
	waitFor(t, "w to run again", 6*testTTL, func() bool { return len(r.running()) == 1 && len(r.snapshot()) == 2 })
	r.checkNoOverlap(t)
}

// An owner whose claim write got no answer observes "present" without a claim read (the
// term ended, and the store could not be read); a delete marker after that must give a
// claim gone without its owner's word, of no node lease, not a crash with w.mu held.
func TestObserveGoneAfterUnreadClaim(t *testing.T) {
	srv := natstest.Run(t)
	st, err := kv.Open(context.Background(), srv.Connect(), kv.Options{Namespace: "t"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(st, "a", ConfigForTTL(testTTL), WithLogger(quiet), WithoutEvents())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	w := newWorker(e, "w", holdUntilDone, workerOptions{})
	w.observe(observation{known: true, present: true, rev: 5})
	w.observe(observation{known: true, rev: 6, expired: true})
	o := w.snapshot()
	if o.present || o.rev != 6 || o.last == nil || bound(*o.last) {
		t.Fatalf("after the marker: present %v, rev %d, last %+v; want gone at 6 after a claim of no node lease", o.present, o.rev, o.last)
	}
}
