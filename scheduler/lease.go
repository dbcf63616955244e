package scheduler

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jetcoord/coordinator/kv"
)

// errLeaseGone: the lease expired, was removed, or belongs to another claim now.
var errLeaseGone = errors.New("scheduler: lease gone")

// lease is a short-lived entry with a per-entry TTL that this node keeps renewing while it
// holds it: a run lease <job>.<tick>.run or the catch-up lock <job>.catchup. The timings
// are ownership's (renew every TTL/5; the holder gives up when no renewal succeeded for
// TTL*4/5, counted from the send time of the last good one), so the holder has stopped
// before anyone else may conclude that the lease is gone.
type lease struct {
	j      *job
	key    string
	onLost func(error)  // the holder's context ends; called at most once
	onStop func(string) // a newer run asked this one to stop (Replace)

	mu  sync.Mutex // serialises writes
	rec leaseRecord
	rev uint64

	sent     time.Time // send time of the create
	dlMu     sync.Mutex
	deadline time.Time     // renew deadline: send time of the last good write + RenewDeadline
	dlCh     chan struct{} // closed when deadline moves
	cancel   context.CancelFunc
	done     chan struct{}
	lostOnce sync.Once
	stopOnce sync.Once
}

func (j *job) newLease(key string, rec leaseRecord, onLost func(error), onStop func(string)) *lease {
	rec.Job, rec.Node, rec.TTL = j.name, j.s.node, kv.Duration(j.s.lease.TTL)
	return &lease{j: j, key: key, rec: rec, onLost: onLost, onStop: onStop}
}

// createLease creates and starts keeping the run lease of tick key for the run r.
func (j *job) createLease(ctx context.Context, key string, rec Run, r *run) (*lease, error) {
	l := j.newLease(leaseKeyOf(key), leaseRecord{Tick: rec.Tick, Claim: rec.Claim, Attempt: rec.Attempt, State: leaseClaiming},
		r.cancel, r.replaced)
	if err := l.create(ctx); err != nil {
		return nil, err
	}
	if !l.start() {
		l.release(leaseDone)
		return nil, ErrClosed
	}
	return l, nil
}

// create writes the lease if the key has no live entry. It returns kv.ErrExists when
// another claim holds it. A create whose reply was lost is recognised by the claim id.
func (l *lease) create(ctx context.Context) error {
	j := l.j
	backoff := 50 * time.Millisecond
	for {
		l.sent = j.clock()
		l.rec.Renewed = l.sent.UTC()
		cctx, cancel := j.opCtx(ctx)
		rev, err := j.s.bucket.Create(cctx, l.key, l.rec.encode(), j.s.lease.TTL)
		cancel()
		if err == nil {
			l.rev = rev
			return nil
		}
		if !errors.Is(err, kv.ErrExists) && !errors.Is(err, kv.ErrUnavailable) {
			return err
		}
		gctx, cancel := j.opCtx(ctx)
		e, gerr := j.s.bucket.Get(gctx, l.key)
		cancel()
		if gerr == nil {
			if cur, derr := decodeLease(l.key, e.Value); derr == nil && cur.Claim == l.rec.Claim {
				l.rev = e.Revision
				return nil
			}
			return kv.ErrExists
		}
		if errors.Is(err, kv.ErrExists) && errors.Is(gerr, kv.ErrNotFound) {
			// It went away between the two calls: try again at once.
			continue
		}
		if !j.sleep(ctx, backoff) {
			return err
		}
		backoff = min(backoff*2, time.Second)
	}
}

// Deadline returns the run's renew deadline and a channel closed when it next moves; the
// run must be stopped when it passes (supervised commands hand it to their watchdog).
func (l *lease) Deadline() (time.Time, <-chan struct{}) {
	l.dlMu.Lock()
	defer l.dlMu.Unlock()
	if l.dlCh == nil {
		l.deadline = l.sent.Add(l.j.s.lease.RenewDeadline)
		l.dlCh = make(chan struct{})
	}
	return l.deadline, l.dlCh
}

func (l *lease) extend(d time.Time) {
	_, _ = l.Deadline()
	l.dlMu.Lock()
	defer l.dlMu.Unlock()
	if d.After(l.deadline) {
		l.deadline = d
		close(l.dlCh)
		l.dlCh = make(chan struct{})
	}
}

// start runs the renewal loop; false when the job is stopping.
func (l *lease) start() bool {
	ctx, cancel := context.WithCancel(context.Background()) // outlives the job's context: final records are written under it
	l.cancel, l.done = cancel, make(chan struct{})
	if !l.j.goFunc(func() { l.keep(ctx) }) {
		cancel()
		close(l.done)
		return false
	}
	return true
}

func (l *lease) lose(cause error) {
	l.lostOnce.Do(func() {
		if l.onLost != nil {
			l.onLost(cause)
		}
	})
}

func (l *lease) keep(ctx context.Context) {
	defer close(l.done)
	j, cfg := l.j, l.j.s.lease
	clock := j.s.opts.clock
	fence := clock.AfterFunc(l.sent.Add(cfg.RenewDeadline).Sub(clock.Now()), func() {
		j.log.Warn("lease renew deadline passed", "key", l.key)
		l.lose(ErrLeaseExpired)
	})
	defer fence.Stop()
	interval := cfg.RenewInterval
	for j.sleep(ctx, interval) {
		sent := clock.Now()
		err := l.write(ctx, nil, cfg.TTL)
		switch {
		case err == nil:
			fence.Reset(sent.Add(cfg.RenewDeadline).Sub(clock.Now()))
			l.extend(sent.Add(cfg.RenewDeadline))
			interval = cfg.RenewInterval
		case errors.Is(err, errLeaseGone):
			j.log.Warn("lease lost", "key", l.key)
			l.lose(ErrLeaseLost)
			return
		default:
			j.log.Debug("cannot renew lease; retrying", "key", l.key, "err", err)
			interval = cfg.RenewInterval / 4
		}
	}
}

// write updates the lease at its last revision with a new TTL, after mutate. When someone
// else wrote it, it takes over a stop request if the claim is still this one's and
// returns errLeaseGone if not.
func (l *lease) write(ctx context.Context, mutate func(*leaseRecord), ttl time.Duration) error {
	j := l.j
	var stop string
	l.mu.Lock()
	if mutate != nil {
		mutate(&l.rec)
	}
	var err error
	for i := 0; i < 3; i++ {
		l.rec.Renewed = j.clock().UTC()
		wctx, cancel := j.opCtx(ctx)
		var rev uint64
		rev, err = j.s.bucket.Update(wctx, l.key, l.rec.encode(), l.rev, ttl)
		cancel()
		if err == nil {
			l.rev = rev
			break
		}
		if !errors.Is(err, kv.ErrConflict) {
			break
		}
		gctx, cancel := j.opCtx(ctx)
		e, gerr := j.s.bucket.Get(gctx, l.key)
		cancel()
		if errors.Is(gerr, kv.ErrNotFound) {
			err = errLeaseGone
			break
		} else if gerr != nil {
			err = gerr
			break
		}
		cur, derr := decodeLease(l.key, e.Value)
		if derr != nil || cur.Claim != l.rec.Claim {
			err = errLeaseGone
			break
		}
		l.rev = e.Revision
		if cur.Stop != "" && l.rec.Stop == "" {
			l.rec.Stop, stop = cur.Stop, cur.Stop
		}
	}
	l.mu.Unlock()
	if stop != "" && l.onStop != nil {
		l.onStop(stop)
	}
	return err
}

// update changes the lease now (e.g. claiming → running).
func (l *lease) update(ctx context.Context, mutate func(*leaseRecord)) error {
	return l.write(ctx, mutate, l.j.s.lease.TTL)
}

// stopKeeping ends the renewal loop and waits for it.
func (l *lease) stopKeeping() {
	l.stopOnce.Do(func() {
		if l.cancel != nil {
			l.cancel()
			<-l.done
		}
	})
}

// release stops renewing and leaves the lease in state with a one-second TTL: watchers see
// it expire shortly, and the entry's marker goes with the bucket's marker TTL, so finished
// runs do not pile up as delete markers for the whole retention. A failed release is
// harmless: the lease runs out by its own TTL.
func (l *lease) release(state string) {
	l.stopKeeping()
	ctx, cancel := l.j.opCtx(context.Background())
	defer cancel()
	if err := l.write(ctx, func(r *leaseRecord) { r.State = state }, time.Second); err != nil {
		l.j.log.Debug("cannot release lease; it runs out by itself", "key", l.key, "err", err)
	}
}

// remove stops renewing and deletes the lease (compare-and-set): for the catch-up lock,
// one key per job, so that the next node need not wait for it to expire.
func (l *lease) remove() {
	l.stopKeeping()
	ctx, cancel := l.j.opCtx(context.Background())
	defer cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.j.s.bucket.Delete(ctx, l.key, l.rev); err != nil {
		l.j.log.Debug("cannot delete lease; it runs out by itself", "key", l.key, "err", err)
	}
}
