package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Store writes one lease entry with compare-and-set. The lease calls it from one goroutine
// at a time, serialised with Update.
type Store interface {
	// Renew writes the entry again at revision rev, with a fresh TTL, and returns the new
	// revision. It returns an error wrapping ErrLost when the entry is not this lease's any
	// more (deleted, expired, overwritten by another holder); the lease then ends at once.
	// Any other error is retried a quarter RenewInterval later. When the write conflicts
	// because an earlier attempt whose reply was lost did land, Renew may return that
	// revision with landed true: the deadline then counts from that earlier attempt.
	Renew(ctx context.Context, rev uint64) (newRev uint64, landed bool, err error)
}

// Config starts a Lease on an entry the holder has just written.
type Config struct {
	// Name is logged with the lease's warnings (the worker or key).
	Name   string
	Timing Timing
	Store  Store
	// Rev is the revision of the entry as written by the holder; Sent is the Clock reading
	// taken just before that write was sent. The first deadline is Sent + RenewDeadline.
	Rev  uint64
	Sent time.Time
	// Clock defaults to RealClock.
	Clock Clock
	// Log defaults to slog.Default().
	Log *slog.Logger
	// OnEnd, if set, is called once when the lease is lost or its deadline passes (cause
	// ErrLost or ErrExpired, possibly wrapped): on the fence timer's goroutine, on the renew
	// loop or in the caller of Update — there with the write lock held — or in the caller of
	// Lose. It must return quickly and must not call Stop, Rev or Update (they would wait
	// for it). It is not called for Stop. Holders cancel their work's context in it.
	OnEnd func(cause error)
}

// Lease keeps one entry renewed: a renew loop, a deadline counted from the send time of the
// last good renewal, and a fence — a timer armed at every renewal and independent of the
// loop, so that the lease ends on time even if a renewal call hangs.
type Lease struct {
	cfg Config

	writeMu sync.Mutex // serialises Store.Renew and Update
	rev     uint64     // guarded by writeMu

	mu       sync.Mutex
	deadline time.Time
	changed  chan struct{} // closed when the deadline moves
	cause    error         // why it ended; nil while live
	ended    chan struct{}
	fence    Timer

	stop      chan struct{}
	stopOnce  sync.Once
	stopCtx   context.Context // ends at Stop: a hanging renewal does not hold Stop up
	stopCause context.CancelFunc
	loopDone  chan struct{}
	unackedAt time.Time // loop only: send time of the first failed attempt since the last success
}

// Start validates cfg.Timing, starts the renew loop and arms the fence. The caller must call
// Stop once it no longer needs the lease (also after it ended), to wait for the loop. It
// returns ErrInvalidTiming (a *TimingError) or an error naming a missing field.
func Start(cfg Config) (*Lease, error) {
	if err := cfg.Timing.Validate(); err != nil {
		return nil, err
	}
	if cfg.Store == nil {
		return nil, errors.New("lease: Config.Store is nil")
	}
	cfg.Timing = cfg.Timing.Derive()
	if cfg.Clock == nil {
		cfg.Clock = RealClock{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Sent.IsZero() {
		cfg.Sent = cfg.Clock.Now()
	}
	l := &Lease{cfg: cfg, rev: cfg.Rev, deadline: cfg.Sent.Add(cfg.Timing.RenewDeadline),
		changed: make(chan struct{}), ended: make(chan struct{}), stop: make(chan struct{}), loopDone: make(chan struct{})}
	l.stopCtx, l.stopCause = context.WithCancel(context.Background())
	l.mu.Lock()
	l.fence = cfg.Clock.AfterFunc(l.deadline.Sub(cfg.Clock.Now()), l.fenceFired)
	l.mu.Unlock()
	go l.loop()
	return l, nil
}

// Timing returns the lease's timings, derived.
func (l *Lease) Timing() Timing { return l.cfg.Timing }

// Deadline returns the renew deadline — when the lease ends unless a renewal succeeds
// first — and a channel that is closed when it next moves. Once the lease was lost the
// deadline is the moment of the loss: work guarded by it must stop now.
func (l *Lease) Deadline() (time.Time, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline, l.changed
}

// Done is closed when the lease has ended: lost, expired or stopped.
func (l *Lease) Done() <-chan struct{} { return l.ended }

// Err returns nil while the lease is live, then why it ended: an error wrapping ErrLost,
// ErrExpired or ErrStopped.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cause
}

// Rev returns the revision of the entry as last written by this lease. Read it after Stop
// for a final compare-and-set write or delete.
func (l *Lease) Rev() uint64 {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	return l.rev
}

// Lose ends the lease now with cause (which should wrap ErrLost): the holder saw its entry
// deleted, expired or overwritten. The deadline is pulled in to now.
func (l *Lease) Lose(cause error) {
	if cause == nil {
		cause = ErrLost
	}
	l.end(cause, true)
}

// Update runs write at the lease's current revision, serialised with renewals, and keeps
// the revision it returns. A successful write counts as a renewal sent when Update was
// called. It returns ErrStopped or the lease's end cause when the lease is not live, and
// write's error otherwise (an error wrapping ErrLost also ends the lease).
func (l *Lease) Update(ctx context.Context, write func(ctx context.Context, rev uint64) (uint64, error)) error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if err := l.Err(); err != nil {
		return err
	}
	sent := l.cfg.Clock.Now()
	rev, err := write(ctx, l.rev)
	if err != nil {
		if errors.Is(err, ErrLost) {
			l.end(err, true)
		}
		return err
	}
	l.rev = rev
	l.extend(sent.Add(l.cfg.Timing.RenewDeadline))
	return nil
}

// Stop ends the renew loop, waits for it and returns the last revision written. The entry
// is left as it is: the holder releases it (a final write or delete at that revision) or
// lets it expire. Safe to call more than once and after the lease ended.
func (l *Lease) Stop() uint64 {
	l.stopOnce.Do(func() {
		close(l.stop)
		l.stopCause()
	})
	<-l.loopDone
	l.end(ErrStopped, false)
	return l.Rev()
}

func (l *Lease) fenceFired() {
	l.mu.Lock()
	// A renewal may have moved the deadline just as the timer fired.
	if l.cfg.Clock.Now().Before(l.deadline) {
		l.fence.Reset(l.deadline.Sub(l.cfg.Clock.Now()))
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	l.cfg.Log.Warn("lease renew deadline passed", "lease", l.cfg.Name, "renew_deadline", l.cfg.Timing.RenewDeadline)
	l.end(fmt.Errorf("%w: no renewal succeeded for %v", ErrExpired, l.cfg.Timing.RenewDeadline), false)
}

// end records the first cause; pull moves the deadline to now.
func (l *Lease) end(cause error, pull bool) {
	l.mu.Lock()
	if l.cause != nil {
		l.mu.Unlock()
		return
	}
	l.cause = cause
	l.fence.Stop()
	if now := l.cfg.Clock.Now(); pull && now.Before(l.deadline) {
		l.deadline = now
		close(l.changed)
		l.changed = make(chan struct{})
	}
	close(l.ended)
	l.mu.Unlock()
	if l.cfg.OnEnd != nil && !errors.Is(cause, ErrStopped) {
		l.cfg.OnEnd(cause)
	}
}

// extend moves the deadline to d unless the lease ended or its deadline already passed: a
// renewal whose reply came back late does not revive it.
func (l *Lease) extend(d time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Clock.Now()
	if l.cause != nil || !now.Before(l.deadline) || !d.After(l.deadline) {
		return
	}
	l.deadline = d
	l.fence.Reset(d.Sub(now))
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *Lease) loop() {
	defer close(l.loopDone)
	t := l.cfg.Timing
	timer := l.cfg.Clock.NewTimer(t.RenewInterval)
	defer timer.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-l.ended:
			return
		case <-timer.C():
		}
		next := t.RenewInterval
		if !l.renew() {
			next = t.RenewInterval / 4
		}
		timer.Reset(next)
	}
}

// renew makes one attempt; false when it should be retried soon.
func (l *Lease) renew() bool {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if l.Err() != nil {
		return true
	}
	clock, t := l.cfg.Clock, l.cfg.Timing
	sent := clock.Now()
	timeout := t.RenewInterval
	if dl, _ := l.Deadline(); dl.Sub(sent) < timeout && dl.Sub(sent) > 0 {
		timeout = dl.Sub(sent)
	}
	ctx, cancel := context.WithTimeout(l.stopCtx, timeout)
	rev, landed, err := l.cfg.Store.Renew(ctx, l.rev)
	cancel()
	switch {
	case err == nil:
		from := sent
		if landed && !l.unackedAt.IsZero() {
			from = l.unackedAt
		}
		l.unackedAt = time.Time{}
		l.rev = rev
		l.extend(from.Add(t.RenewDeadline))
		return true
	case errors.Is(err, ErrLost):
		l.cfg.Log.Warn("lease lost", "lease", l.cfg.Name, "err", err)
		l.end(err, true)
		return true
	default:
		if l.unackedAt.IsZero() {
			l.unackedAt = sent
		}
		if l.stopCtx.Err() == nil {
			l.cfg.Log.Warn("lease renewal failed; retrying", "lease", l.cfg.Name, "err", err)
		}
		return false
	}
}
