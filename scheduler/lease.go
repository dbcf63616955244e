package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jetcoord/coordinator/kv"
	"github.com/jetcoord/coordinator/lease"
)

// errGarbageLease: the lease key holds a value that is not a lease (written by hand, say).
var errGarbageLease = errors.New("scheduler: the lease key holds a value that is not a lease")

// runLease is a short-lived entry with a per-entry TTL that this node keeps renewed while it
// holds it: a run lease <job>.<tick>.run or the catch-up lock <job>.catchup. The renew
// loop, deadline and fence are lease.Lease's, with the scheduler's timings (the one rule,
// lease.Timing), so the holder has stopped before anyone else may conclude that the lease
// is gone. runLease is its Store: a renewal that conflicts re-reads the entry to tell a stop
// request from a newer run (Replace) or its own earlier write from another claim.
type runLease struct {
	j      *job
	key    string
	onStop func(string) // a newer run asked this one to stop (Replace)

	mu  sync.Mutex // guards rec
	rec leaseRecord
	l   *lease.Lease
}

func (j *job) newLease(key string, rec leaseRecord, onStop func(string)) *runLease {
	rec.Job, rec.Node, rec.TTL = j.name, j.s.node, kv.Duration(j.s.timing.TTL)
	return &runLease{j: j, key: key, rec: rec, onStop: onStop}
}

// createLease creates and starts keeping the run lease of tick key for the run r. It is
// "running" from the start, so that Skip and Replace on other nodes count the run from its
// first write (a lease whose claim then loses the record is released at once).
func (j *job) createLease(ctx context.Context, key string, rec Run, r *run) (*runLease, error) {
	l := j.newLease(leaseKeyOf(key), leaseRecord{Tick: rec.Tick, Claim: rec.Claim, Attempt: rec.Attempt, State: leaseRunning}, r.replaced)
	if err := l.create(ctx, r.cancel); err != nil {
		return nil, err
	}
	return l, nil
}

// create writes the lease if the key has no live entry and starts keeping it; onLost is
// called (with ErrLeaseExpired or ErrLeaseLost) when it is lost. It returns kv.ErrExists
// when another claim holds it. A create whose reply was lost is recognised by the claim
// id.
func (l *runLease) create(ctx context.Context, onLost func(error)) error {
	j := l.j
	backoff := 50 * time.Millisecond
	for {
		sent := j.clock()
		l.rec.Renewed = sent.UTC()
		cctx, cancel := j.opCtx(ctx)
		rev, err := j.s.bucket.Create(cctx, l.key, l.rec.encode(), j.s.timing.TTL)
		cancel()
		if err == nil {
			return l.start(rev, sent, onLost)
		}
		if !errors.Is(err, kv.ErrExists) && !errors.Is(err, kv.ErrUnavailable) {
			return err
		}
		gctx, cancel := j.opCtx(ctx)
		e, gerr := j.readDecisive(gctx, l.key)
		cancel()
		if gerr == nil {
			cur, derr := decodeLease(l.key, e.Value)
			switch {
			case derr != nil:
				return fmt.Errorf("%w: %w", errGarbageLease, derr)
			case cur.Claim == l.rec.Claim:
				return l.start(e.Revision, sent, onLost)
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

func (l *runLease) start(rev uint64, sent time.Time, onLost func(error)) error {
	j := l.j
	ll, err := lease.Start(lease.Config{Name: l.key, Timing: j.s.timing, Store: l, Rev: rev, Sent: sent,
		Clock: j.s.opts.clock, Log: j.log,
		OnEnd: func(cause error) {
			if errors.Is(cause, lease.ErrExpired) {
				onLost(ErrLeaseExpired)
			} else {
				onLost(ErrLeaseLost)
			}
		}})
	if err != nil {
		return err // New validated the timing: not reached
	}
	l.l = ll
	return nil
}

// Deadline returns the run's renew deadline and a channel closed when it next moves; the
// run must be stopped when it passes (supervised commands hand it to their watchdog).
func (l *runLease) Deadline() (time.Time, <-chan struct{}) { return l.l.Deadline() }

// lose ends the lease now: this node's watch saw it deleted or taken by another claim.
func (l *runLease) lose() {
	l.l.Lose(fmt.Errorf("%w: %s changed under this run", lease.ErrLost, l.key))
}

// Renew is the lease.Store method: the same record again, with a fresh TTL.
func (l *runLease) Renew(ctx context.Context, rev uint64) (uint64, bool, error) {
	nrev, err := l.writeAt(ctx, rev, nil, l.j.s.timing.TTL)
	return nrev, false, err
}

// writeAt updates the lease at revision rev with a new TTL, after mutate. When someone
// else wrote it, it takes over a stop request if the claim is still this one's and
// returns an error wrapping lease.ErrLost if not.
func (l *runLease) writeAt(ctx context.Context, rev uint64, mutate func(*leaseRecord), ttl time.Duration) (uint64, error) {
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
		var nrev uint64
		nrev, err = j.s.bucket.Update(wctx, l.key, l.rec.encode(), rev, ttl)
		cancel()
		if err == nil {
			rev = nrev
			break
		}
		if !errors.Is(err, kv.ErrConflict) {
			break
		}
		gctx, cancel := j.opCtx(ctx)
		e, gerr := j.readDecisive(gctx, l.key)
		cancel()
		if errors.Is(gerr, kv.ErrNotFound) {
			err = fmt.Errorf("%w: %s is gone", lease.ErrLost, l.key)
			break
		} else if gerr != nil {
			err = gerr
			break
		}
		cur, derr := decodeLease(l.key, e.Value)
		if derr != nil || cur.Claim != l.rec.Claim {
			err = fmt.Errorf("%w: %s belongs to another claim", lease.ErrLost, l.key)
			break
		}
		rev = e.Revision
		if cur.Stop != "" && l.rec.Stop == "" {
			l.rec.Stop, stop = cur.Stop, cur.Stop
		}
	}
	l.mu.Unlock()
	if stop != "" && l.onStop != nil {
		l.onStop(stop)
	}
	return rev, err
}

// stopKeeping ends the renewal loop and waits for it. The entry runs out by its TTL.
func (l *runLease) stopKeeping() { l.l.Stop() }

// release stops renewing and leaves the lease in state with a one-second TTL: watchers see
// it expire shortly, and the entry's marker goes with the bucket's marker TTL, so finished
// runs do not pile up as delete markers for the whole retention. A failed release is
// harmless: the lease runs out by its own TTL.
func (l *runLease) release(state string) {
	rev := l.l.Stop()
	ctx, cancel := l.j.opCtx(context.Background())
	defer cancel()
	if _, err := l.writeAt(ctx, rev, func(r *leaseRecord) { r.State = state }, time.Second); err != nil {
		l.j.log.Debug("cannot release lease; it runs out by itself", "key", l.key, "err", err)
	}
}

// remove stops renewing and deletes the lease (compare-and-set): for the catch-up lock,
// one key per job, so that the next node need not wait for it to expire.
func (l *runLease) remove() {
	rev := l.l.Stop()
	ctx, cancel := l.j.opCtx(context.Background())
	defer cancel()
	if err := l.j.s.bucket.Delete(ctx, l.key, rev); err != nil {
		l.j.log.Debug("cannot delete lease; it runs out by itself", "key", l.key, "err", err)
	}
}
