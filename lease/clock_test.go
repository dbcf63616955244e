package lease

import (
	"sync"
	"testing"
	"time"
)

// fakeClock moves only when the test advances it. AfterFunc callbacks run in Advance's
// goroutine, so that a test knows they have run when Advance returns.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c      *fakeClock
	at     time.Time
	f      func()
	ch     chan time.Time
	active bool
}

// base has a monotonic reading, as the real clock's times do.
var base = time.Now()

func newFakeClock() *fakeClock { return &fakeClock{now: base} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) add(d time.Duration, f func()) *fakeTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f, active: true}
	if f == nil {
		t.ch = make(chan time.Time, 1)
	}
	c.timers = append(c.timers, t)
	return t
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer { return c.add(d, f) }
func (c *fakeClock) NewTimer(d time.Duration) Timer            { return c.add(d, nil) }

// Advance moves the clock and fires the timers that are due, in order.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	var due []*fakeTimer
	for _, t := range c.timers {
		if t.active && !t.at.After(now) {
			t.active = false
			due = append(due, t)
		}
	}
	c.mu.Unlock()
	for _, t := range due {
		if t.f != nil {
			t.f()
		} else {
			select {
			case t.ch <- now:
			default:
			}
		}
	}
}

// waitArmed waits until n channel timers are armed (the renew loop is waiting).
func (c *fakeClock) waitArmed(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		armed := 0
		for _, tm := range c.timers {
			if tm.active && tm.f == nil {
				armed++
			}
		}
		c.mu.Unlock()
		if armed >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d armed timers (have %d)", n, armed)
		}
		time.Sleep(time.Millisecond)
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.active = false
	return was
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	was := t.active
	t.at, t.active = t.c.now.Add(d), true
	due := d <= 0
	if due {
		t.active = false
	}
	now := t.c.now
	t.c.mu.Unlock()
	if due {
		if t.f != nil {
			go t.f()
		} else {
			select {
			case t.ch <- now:
			default:
			}
		}
	}
	return was
}
