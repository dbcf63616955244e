package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nuid"

	"github.com/jetcoord/coordinator/kv"
)

// catchUpLoop runs the requested catch-up passes — when the job starts, and when the store
// comes back after this node could not reach it — and keeps <job>.last from expiring.
func (j *job) catchUpLoop() {
	every := min(max(j.s.retention/8, time.Minute), time.Hour)
	touch := j.s.opts.clock.NewTimer(every)
	defer touch.Stop()
	for {
		select {
		case <-j.ctx.Done():
			return
		case <-j.catchUpKick:
			j.mu.Lock()
			from := j.catchUpFrom
			j.catchUpFrom = time.Time{}
			j.mu.Unlock()
			if !from.IsZero() {
				j.catchUp(from)
			}
		case <-touch.C():
			j.touchLast()
			touch.Reset(every)
		}
	}
}

// catchUp handles the ticks after from that have no record, retrying until it is done or
// the job stops.
func (j *job) catchUp(from time.Time) {
	for backoff := 100 * time.Millisecond; ; backoff = min(backoff*2, 2*time.Second) {
		done, err := j.catchUpOnce(from)
		if done || j.ctx.Err() != nil {
			return
		}
		if err != nil {
			j.log.Debug("catch-up pass failed; retrying", "err", err)
		}
		if !j.sleep(j.ctx, backoff) {
			return
		}
	}
}

// catchUpOnce is one pass under the catch-up lock, so that one node at a time walks the
// ticks after from, in order, and catch-up runs follow one another. A tick that has a
// record is left alone; one without is missed: recorded so, or run per the policy. It
// reports false when the pass must be tried again: the lock was held by another node
// (which may die), or the store did not answer.
func (j *job) catchUpOnce(from time.Time) (bool, error) {
	ctx, cancel := context.WithCancelCause(j.ctx)
	defer cancel(nil)
	l := j.newLease(catchUpKey(j.name), leaseRecord{Claim: nuid.Next(), State: leaseCatchUp}, nil)
	if err := l.create(ctx, func(cause error) { cancel(cause) }); errors.Is(err, kv.ErrExists) {
		j.log.Debug("another node holds the catch-up lock; waiting")
		return false, nil
	} else if err != nil {
		return false, err
	}
	defer l.remove()

	// Up to missAfter before now, taken once the lock is held: by then every live node has
	// passed its takeover time for those ticks, so a tick without a record is missed.
	upto := j.clock().Add(-j.s.opts.missAfter)
	if floor := j.historyFloor(j.clock()); from.Before(floor) {
		// Older records may have expired with the run history: those ticks cannot be told
		// apart from missed ones, and are neither recorded nor run.
		j.log.Info("catch-up looks back only as far as the run history", "from", floor, "instead_of", from, "history", j.historyTTL())
		from = floor
	}
	ticks, dropped := j.missedTicks(from, upto)
	j.log.Debug("catch-up pass", "after", from, "upto", upto, "ticks", len(ticks))
	if len(ticks) == 0 {
		return true, nil
	}
	// The policy runs the most recent ticks that have no record — a tick claimed late by
	// a tick loop (the store came back just now) is not one of them, and does not use up
	// the policy's runs.
	budget := 0
	switch j.opts.catchUp {
	case Last:
		budget = 1
	case All:
		budget = j.opts.catchUpLimit
	}
	run := map[int]bool{}
	for i := len(ticks) - 1; i >= 0 && len(run) < budget; i-- {
		gctx, gcancel := j.opCtx(ctx)
		_, err := j.s.bucket.Get(gctx, tickKey(j.name, ticks[i], false))
		gcancel()
		switch {
		case errors.Is(err, kv.ErrNotFound):
			run[i] = true
		case err != nil:
			return false, err
		}
	}
	j.log.Info("catching up on ticks nobody claimed", "ticks", len(ticks), "run", len(run),
		"policy", j.opts.catchUp.String(), "from", ticks[0], "to", ticks[len(ticks)-1])
	if dropped > 0 {
		j.log.Warn("too many missed ticks: the oldest are not recorded", "unrecorded", dropped, "recorded", len(ticks))
	}
	why := fmt.Sprintf("missed: no node claimed it within %v; catch-up %s", j.s.opts.missAfter, j.opts.catchUp)
	for i, t := range ticks {
		if ctx.Err() != nil {
			return false, context.Cause(ctx)
		}
		if !run[i] {
			if _, err := j.recordMissed(ctx, t, why); err != nil {
				return false, err
			}
			continue
		}
		out, _, r, err := j.claim(ctx, tickReq{t: t, reason: "catch-up", attempt: 1})
		if err != nil {
			return false, err
		}
		if out == outStarted {
			select { // one after the other
			case <-r.done:
			case <-ctx.Done():
				return false, context.Cause(ctx)
			}
		}
	}
	return true, nil
}

// missedTicks returns the ticks after from up to upto, at most maxCatchUpScan of the most
// recent, and how many older ones it left out.
func (j *job) missedTicks(from, upto time.Time) ([]time.Time, int) {
	var ticks []time.Time
	dropped := 0
	for t := j.sched.Next(from); !t.IsZero() && !t.After(upto); t = j.sched.Next(t) {
		if len(ticks) == maxCatchUpScan {
			ticks = ticks[1:]
			dropped++
		}
		ticks = append(ticks, t)
	}
	return ticks, dropped
}

// touchLast rewrites <job>.last (compare-and-set, same value) when it is half the bucket's
// retention old, so that a job that runs less often than that (monthly, say) keeps the
// anchor catch-up needs.
func (j *job) touchLast() {
	ctx, cancel := j.opCtx(j.ctx)
	defer cancel()
	e, err := j.s.bucket.Get(ctx, lastKey(j.name))
	if err != nil || j.clock().Sub(e.Created) < j.s.retention/2 {
		return
	}
	if _, err := j.s.bucket.Update(ctx, lastKey(j.name), e.Value, e.Revision, 0); err != nil && !errors.Is(err, kv.ErrConflict) {
		j.log.Debug("cannot refresh the last run record", "err", err)
	}
}
