package ownership

import (
	"context"
	"errors"
	"testing"
	"time"
)

type exitErr int

func (e exitErr) Error() string { return "exit" }
func (e exitErr) ExitCode() int { return int(e) }

// The runtime states of a worker as its runs come and go, on a fake clock.
func TestRuntimeStates(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	rt := NewRuntime()
	rt.now = func() time.Time { return now }
	state := func() WorkerRuntime {
		t.Helper()
		w, ok := rt.Get("w")
		if !ok {
			t.Fatal("w not registered")
		}
		return w
	}
	release := make(chan error)
	entered := make(chan struct{})
	fn := rt.WrapProcess("w", RestartAlways, func(ctx context.Context, l *Lease) error {
		entered <- struct{}{}
		return <-release
	})
	if s := state(); s.State != StateStandby || s.Token != 0 {
		t.Fatalf("registered: %+v, want standby", s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lease := newLease("w", "a", 7, now.Add(time.Hour))
	run := func() chan error {
		done := make(chan error, 1)
		go func() { done <- fn(ctx, lease) }()
		<-entered
		return done
	}

	done := run()
	now = now.Add(5 * time.Second)
	if s := state(); s.State != StateStarting {
		t.Fatalf("process not started after 5s: %s, want starting", s.State)
	}
	rt.Started("w", 7)
	if s := state(); s.State != StateStarting {
		t.Fatalf("just started: %s, want starting", s.State)
	}
	now = now.Add(DefaultStartGrace)
	if s := state(); s.State != StateRunning || s.Token != 7 {
		t.Fatalf("up for the start grace: %+v, want running", s)
	}
	// Three quick failures: backing off, then failing; the exit code is kept.
	for i := 1; i <= FailingAfter; i++ {
		release <- exitErr(3)
		<-done
		s := state()
		want := StateBackingOff
		if i >= FailingAfter {
			want = StateFailing
		}
		if s.State != want || s.Failures != i || s.LastExit == nil || s.LastExit.Code == nil || *s.LastExit.Code != 3 {
			t.Fatalf("after failure %d: %+v, want %s with code 3", i, s, want)
		}
		if i < FailingAfter {
			done = run()
			rt.Started("w", 7)
			now = now.Add(DefaultStartGrace)
		}
	}
	if s := state(); s.Restarts != FailingAfter-1 {
		t.Fatalf("restarts %d, want %d", s.Restarts, FailingAfter-1)
	}
	// A run that never starts its process (missing binary) has no exit code.
	done = run()
	release <- errors.New("not started")
	<-done
	if s := state(); s.LastExit.Code != nil || s.State != StateFailing {
		t.Fatalf("unstarted run: %+v", s)
	}
	// The term ends between runs: standby again.
	cancel()
	waitFor(t, "standby after the term", time.Second, func() bool { return state().State == StateStandby })
	rt.Remove("w")
	if _, ok := rt.Get("w"); ok {
		t.Fatal("removed worker still known")
	}
}
