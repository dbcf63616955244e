package lease

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testTiming: renew every 1s, deadline 4s, TTL 5s.
var testTiming = Timing{TTL: 5 * time.Second}.Derive()

// scriptStore answers each Renew with what the test sends on replies; calls tells the test
// that a Renew is waiting and with which revision.
type scriptStore struct {
	calls   chan uint64
	replies chan reply
}

type reply struct {
	rev    uint64
	landed bool
	err    error
	before func() // runs before the reply is returned (e.g. advance the clock: a slow write)
}

func newScriptStore() *scriptStore {
	return &scriptStore{calls: make(chan uint64), replies: make(chan reply)}
}

func (s *scriptStore) Renew(ctx context.Context, rev uint64) (uint64, bool, error) {
	select {
	case s.calls <- rev:
	case <-ctx.Done():
		return 0, false, ctx.Err()
	}
	select {
	case r := <-s.replies:
		if r.before != nil {
			r.before()
		}
		return r.rev, r.landed, r.err
	case <-ctx.Done():
		return 0, false, ctx.Err()
	}
}

type ended struct {
	mu     sync.Mutex
	causes []error
}

func (e *ended) record(err error) { e.mu.Lock(); e.causes = append(e.causes, err); e.mu.Unlock() }
func (e *ended) get() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.causes...)
}

func start(t *testing.T, clock *fakeClock, st Store, e *ended) *Lease {
	t.Helper()
	l, err := Start(Config{Name: "w", Timing: testTiming, Store: st, Rev: 10, Sent: clock.Now(), Clock: clock, Log: quiet, OnEnd: e.record})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	clock.waitArmed(t, 1) // the loop's timer counts from 0
	return l
}

// renewOnce lets the loop's timer fire and answers its Renew with r.
func renewOnce(t *testing.T, clock *fakeClock, st *scriptStore, after time.Duration, r reply) uint64 {
	t.Helper()
	clock.waitArmed(t, 1)
	clock.Advance(after)
	select {
	case rev := <-st.calls:
		st.replies <- r
		return rev
	case <-time.After(5 * time.Second):
		t.Fatal("no renewal")
	}
	return 0
}

func waitDeadline(t *testing.T, l *Lease, want time.Time) {
	t.Helper()
	for limit := time.Now().Add(5 * time.Second); ; {
		d, ch := l.Deadline()
		if d.Equal(want) {
			return
		}
		select {
		case <-ch:
		case <-time.After(time.Until(limit)):
			t.Fatalf("deadline %v, want %v", d.Sub(base), want.Sub(base))
		}
	}
}

// The deadline counts from the send time of the last good renewal, not from its reply.
func TestDeadlineFromSendTime(t *testing.T) {
	clock, st, e := newFakeClock(), newScriptStore(), &ended{}
	l := start(t, clock, st, e)
	if d, _ := l.Deadline(); !d.Equal(base.Add(4 * time.Second)) {
		t.Fatalf("first deadline %v", d.Sub(base))
	}
	// The renewal is sent at 1s and its reply comes 0.7s later.
	rev := renewOnce(t, clock, st, time.Second, reply{rev: 11, before: func() { clock.Advance(700 * time.Millisecond) }})
	if rev != 10 {
		t.Fatalf("renewed at rev %d, want 10", rev)
	}
	waitDeadline(t, l, base.Add(5*time.Second))
	if l.Rev() != 11 || l.Err() != nil {
		t.Fatalf("rev %d err %v", l.Rev(), l.Err())
	}
}

// The fence is its own timer: a renewal that hangs does not keep the lease alive.
func TestFenceFiresWhileRenewalHangs(t *testing.T) {
	clock, st, e := newFakeClock(), newScriptStore(), &ended{}
	l := start(t, clock, st, e)
	clock.waitArmed(t, 1)
	clock.Advance(time.Second)
	<-st.calls // the renewal hangs: no reply
	clock.Advance(3 * time.Second)
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("lease did not end at its deadline")
	}
	if !errors.Is(l.Err(), ErrExpired) {
		t.Fatalf("Err() = %v, want ErrExpired", l.Err())
	}
	if c := e.get(); len(c) != 1 || !errors.Is(c[0], ErrExpired) {
		t.Fatalf("OnEnd got %v", c)
	}
	// Stop cancels the hanging call and returns.
	l.Stop()
}

// Failed renewals are retried a quarter interval later; the lease ends at the deadline of
// the last good one.
func TestRetriesThenExpires(t *testing.T) {
	clock, st, e := newFakeClock(), newScriptStore(), &ended{}
	l := start(t, clock, st, e)
	renewOnce(t, clock, st, time.Second, reply{rev: 11}) // deadline 5s
	waitDeadline(t, l, base.Add(5*time.Second))
	unavailable := errors.New("no responders")
	renewOnce(t, clock, st, time.Second, reply{err: unavailable}) // at 2s
	for i := 0; i < 11; i++ {                                     // every 250ms up to 4.75s
		renewOnce(t, clock, st, 250*time.Millisecond, reply{err: unavailable})
	}
	if l.Err() != nil {
		t.Fatalf("ended early: %v", l.Err())
	}
	clock.Advance(250 * time.Millisecond) // 5s
	<-l.Done()
	if !errors.Is(l.Err(), ErrExpired) {
		t.Fatalf("Err() = %v", l.Err())
	}
}

// A renewal that finds an earlier attempt landed counts from that attempt's send time.
func TestLandedCountsFromEarlierAttempt(t *testing.T) {
	clock, st, e := newFakeClock(), newScriptStore(), &ended{}
	l := start(t, clock, st, e)
	renewOnce(t, clock, st, time.Second, reply{err: context.DeadlineExceeded})  // sent at 1s, reply lost
	renewOnce(t, clock, st, 250*time.Millisecond, reply{rev: 11, landed: true}) // sent at 1.25s
	waitDeadline(t, l, base.Add(5*time.Second))                                 // 1s + 4s, not 1.25s + 4s
}

// A reply that comes back after the deadline does not revive the lease.
func TestLateReplyDoesNotRevive(t *testing.T) {
	clock, st, e := newFakeClock(), newScriptStore(), &ended{}
	l := start(t, clock, st, e)
	renewOnce(t, clock, st, time.Second, reply{rev: 11, before: func() { clock.Advance(4 * time.Second) }})
	<-l.Done()
	if !errors.Is(l.Err(), ErrExpired) {
		t.Fatalf("Err() = %v", l.Err())
	}
	if d, _ := l.Deadline(); !d.Equal(base.Add(4 * time.Second)) {
		t.Fatalf("deadline moved to %v", d.Sub(base))
	}
}

// A renewal that finds the entry gone ends the lease at once and pulls the deadline in.
func TestLostOnRenewal(t *testing.T) {
	clock, st, e := newFakeClock(), newScriptStore(), &ended{}
	l := start(t, clock, st, e)
	renewOnce(t, clock, st, time.Second, reply{err: ErrLost})
	<-l.Done()
	if !errors.Is(l.Err(), ErrLost) {
		t.Fatalf("Err() = %v", l.Err())
	}
	if d, _ := l.Deadline(); !d.Equal(base.Add(time.Second)) {
		t.Fatalf("deadline %v, want pulled in to 1s", d.Sub(base))
	}
	if c := e.get(); len(c) != 1 || !errors.Is(c[0], ErrLost) {
		t.Fatalf("OnEnd got %v", c)
	}
}

// Lose (the holder's watch saw the entry change) ends it now; OnEnd runs once.
func TestLose(t *testing.T) {
	clock, st, e := newFakeClock(), newScriptStore(), &ended{}
	l := start(t, clock, st, e)
	_, ch := l.Deadline()
	clock.Advance(500 * time.Millisecond)
	l.Lose(nil)
	l.Lose(errors.New("again"))
	select {
	case <-ch:
	default:
		t.Fatal("deadline channel not closed")
	}
	if d, _ := l.Deadline(); !d.Equal(base.Add(500 * time.Millisecond)) {
		t.Fatalf("deadline %v", d.Sub(base))
	}
	if c := e.get(); len(c) != 1 || !errors.Is(c[0], ErrLost) {
		t.Fatalf("OnEnd got %v", c)
	}
	if err := l.Update(context.Background(), func(context.Context, uint64) (uint64, error) { return 0, nil }); !errors.Is(err, ErrLost) {
		t.Fatalf("Update after loss = %v", err)
	}
}

// Update writes at the current revision, serialised with renewals, and counts as one.
func TestUpdate(t *testing.T) {
	clock, st, e := newFakeClock(), newScriptStore(), &ended{}
	l := start(t, clock, st, e)
	clock.Advance(500 * time.Millisecond)
	var at uint64
	if err := l.Update(context.Background(), func(_ context.Context, rev uint64) (uint64, error) { at = rev; return 20, nil }); err != nil {
		t.Fatal(err)
	}
	if at != 10 || l.Rev() != 20 {
		t.Fatalf("wrote at %d, rev now %d", at, l.Rev())
	}
	waitDeadline(t, l, base.Add(4500*time.Millisecond))
	if rev := renewOnce(t, clock, st, 500*time.Millisecond, reply{rev: 21}); rev != 20 {
		t.Fatalf("renewed at %d, want 20", rev)
	}
	waitDeadline(t, l, base.Add(5*time.Second))
	if rev := l.Stop(); rev != 21 {
		t.Fatalf("Stop() = %d", rev)
	}
	if !errors.Is(l.Err(), ErrStopped) || len(e.get()) != 0 {
		t.Fatalf("after Stop: Err %v, OnEnd %v", l.Err(), e.get())
	}
}

func TestStartRejectsBadTiming(t *testing.T) {
	_, err := Start(Config{Timing: Timing{TTL: 15 * time.Second, FenceGrace: 6 * time.Second}, Store: newScriptStore()})
	if !errors.Is(err, ErrInvalidTiming) {
		t.Fatalf("Start = %v", err)
	}
}

// With the real clock: renewals keep it alive until Stop.
func TestRealClock(t *testing.T) {
	var mu sync.Mutex
	n := 0
	st := storeFunc(func(_ context.Context, rev uint64) (uint64, bool, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		return rev + 1, false, nil
	})
	l, err := Start(Config{Timing: Timing{TTL: time.Second}, Store: st, Rev: 1, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for limit := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		done := n >= 3
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(limit) {
			t.Fatal("fewer than 3 renewals in 10s")
		}
	}
	if l.Err() != nil {
		t.Fatal(l.Err())
	}
	l.Stop()
	l.Stop()
}

type storeFunc func(ctx context.Context, rev uint64) (uint64, bool, error)

func (f storeFunc) Renew(ctx context.Context, rev uint64) (uint64, bool, error) { return f(ctx, rev) }
