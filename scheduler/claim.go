package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nuid"

	"github.com/jetcoord/coordinator/kv"
	"github.com/jetcoord/coordinator/ownership"
)

// Event types of kind "job".
const (
	EventFired     = "fired"     // a run started
	EventSucceeded = "succeeded" // it returned nil
	EventFailed    = "failed"    // it failed, or was lost (reason "lost: …")
	EventSkipped   = "skipped"   // overlap policy Skip
	EventMissed    = "missed"    // no node claimed the tick in time and catch-up did not run it
)

// tickReq asks to claim one tick.
type tickReq struct {
	t       time.Time
	manual  bool
	reason  string // scheduled, late, catch-up, manual, retry
	attempt int
	prevRev uint64 // a retry: the revision of the lost record it replaces (compare-and-set)
}

type outcome int

const (
	outTaken   outcome = iota // another claim holds the tick
	outBusy                   // another node is claiming it right now: look again shortly
	outStarted                // this node won it and its run started
	outSkipped                // this node won it and recorded it skipped
)

var errTaken = errors.New("scheduler: tick claimed by another node")

// claim tries to win tick req.t for this node and, when it does, starts its run (or records
// it skipped). The protocol, in this order:
//
//  1. the run lease <key>.run is created (per-entry TTL, state "running") — so that a
//     claimed record never exists without a lease, and a record still claimed or running
//     whose lease is gone belongs to a dead run;
//  2. the tick record <key> is created (or, for a retry, updated at the lost record's
//     revision): this compare-and-set is the claim — exactly one node wins it. It is
//     written "running" with the start time, or "claimed" under Replace, whose run first
//     waits for the runs it replaces;
//  3. the run starts.
//
// A tick skipped under overlap policy Skip needs no lease: its record is final at once.
func (j *job) claim(ctx context.Context, req tickReq) (outcome, Tick, *run, error) {
	key := tickKey(j.name, req.t, req.manual)
	if req.prevRev == 0 {
		// A read first saves three writes when another node already has it.
		gctx, cancel := j.opCtx(ctx)
		e, err := j.s.bucket.Get(gctx, key)
		cancel()
		switch {
		case err == nil:
			if _, derr := decodeRun(key, e.Value); derr != nil {
				j.garbage(key, "the tick does not run; delete the key if it was written by hand", derr)
			}
			return outTaken, Tick{}, nil, nil
		case !errors.Is(err, kv.ErrNotFound):
			return outTaken, Tick{}, nil, err
		}
	}
	now := j.clock()
	rec := Run{Job: j.name, Tick: req.t.UTC(), Manual: req.manual, Node: j.s.node, Attempt: req.attempt,
		Reason: req.reason, Claimed: now.UTC(), Claim: nuid.Next()}

	if j.opts.overlap == Skip {
		if other := j.runningOther(key); other != "" {
			rec.State, rec.Reason, rec.Ended = StateSkipped, "overlap with "+other, now.UTC()
			rev, err := j.writeRecord(ctx, key, rec, req.prevRev)
			if errors.Is(err, errTaken) {
				return outTaken, Tick{}, nil, nil
			} else if err != nil {
				return outTaken, Tick{}, nil, err
			}
			rec.Token = rev
			j.publish(EventSkipped, rec, rec.Reason)
			j.updateLast(rec, rev)
			return outSkipped, j.tickOf(rec), nil, nil
		}
	}

	r := newRun(j, key, rec, req)
	started := false
	defer func() {
		if !started {
			r.cancel(nil)
		}
	}()
	l, err := j.createLease(ctx, key, rec, r)
	if errors.Is(err, errGarbageLease) {
		// Waiting for it to go away would stall the job's tick loop for the whole miss
		// window: the tick is recorded skipped instead, and the next one is claimed on time.
		j.garbage(leaseKeyOf(key), "the tick is recorded skipped; delete the key if it was written by hand", err)
		rec.State, rec.Reason, rec.Ended = StateSkipped, "its run lease key "+leaseKeyOf(key)+" holds a value that is not a lease", j.clock().UTC()
		rev, werr := j.writeRecord(ctx, key, rec, req.prevRev)
		if errors.Is(werr, errTaken) {
			return outTaken, Tick{}, nil, nil
		} else if werr != nil {
			return outTaken, Tick{}, nil, werr
		}
		rec.Token = rev
		j.publish(EventSkipped, rec, rec.Reason)
		j.updateLast(rec, rev)
		return outSkipped, j.tickOf(rec), nil, nil
	}
	if errors.Is(err, kv.ErrExists) {
		if req.prevRev != 0 {
			return outTaken, Tick{}, nil, nil // another node retries it
		}
		gctx, cancel := j.opCtx(ctx)
		_, gerr := j.s.bucket.Get(gctx, key)
		cancel()
		if gerr == nil {
			return outTaken, Tick{}, nil, nil
		}
		return outBusy, Tick{}, nil, nil
	} else if err != nil {
		return outTaken, Tick{}, nil, err
	}
	r.lease = l

	// The claim also says that the run starts, unless it waits first for the runs it
	// replaces: one write instead of a "claimed" and a "running" one.
	rec.State = StateClaimed
	if j.opts.overlap != Replace {
		rec.State, rec.Started = StateRunning, j.clock().UTC()
	}
	rev, err := j.writeRecord(ctx, key, rec, req.prevRev)
	if err != nil {
		state := leaseDone
		if !errors.Is(err, errTaken) {
			// The create may have landed unseen: a lost lease makes the sweepers look.
			state = leaseLost
		}
		l.release(state)
		if errors.Is(err, errTaken) {
			return outTaken, Tick{}, nil, nil
		}
		return outTaken, Tick{}, nil, err
	}
	rec.Token = rev
	r.rec, r.rev = rec, rev

	j.mu.Lock()
	j.runs[key] = r
	j.notifyLocked()
	j.mu.Unlock()
	if !j.goFunc(r.execute) {
		// Stopping: record the claim as lost, so that it is not left claimed.
		r.cancel(context.Cause(j.ctx))
		r.finish(false, nil)
		return outTaken, Tick{}, nil, ErrClosed
	}
	started = true
	return outStarted, j.tickOf(rec), r, nil
}

// garbage logs, once per key, a value in the jobs bucket that is not a valid record.
func (j *job) garbage(key, what string, err error) {
	j.mu.Lock()
	if j.garbageSeen == nil {
		j.garbageSeen = map[string]bool{}
	}
	seen := j.garbageSeen[key]
	j.garbageSeen[key] = true
	j.mu.Unlock()
	if !seen {
		j.log.Warn("a key in the jobs bucket holds a value that is not a valid record; "+what, "key", key, "err", err)
	}
}

func (j *job) tickOf(rec Run) Tick {
	return Tick{Job: j.name, Time: rec.Tick.In(j.sched.Location()), Node: rec.Node, Token: rec.Token,
		Manual: rec.Manual, Attempt: rec.Attempt, fenceGrace: j.s.timing.FenceGrace}
}

// writeRecord creates the tick record (prevRev 0) or updates it at prevRev. It returns
// errTaken when another claim holds it. When a write's reply is lost it reads the record:
// if it carries this claim's id, the write landed.
func (j *job) writeRecord(ctx context.Context, key string, rec Run, prevRev uint64) (uint64, error) {
	backoff := 50 * time.Millisecond
	for {
		wctx, cancel := j.opCtx(ctx)
		var rev uint64
		var err error
		if prevRev == 0 {
			rev, err = j.s.bucket.Create(wctx, key, rec.encode(), j.recordTTL(rec.State))
		} else {
			rev, err = j.s.bucket.Update(wctx, key, rec.encode(), prevRev, j.recordTTL(rec.State))
		}
		cancel()
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, kv.ErrExists) && !errors.Is(err, kv.ErrConflict) && !errors.Is(err, kv.ErrUnavailable) {
			return 0, err
		}
		gctx, cancel := j.opCtx(ctx)
		e, gerr := j.readDecisive(gctx, key)
		cancel()
		switch {
		case gerr == nil:
			if cur, derr := decodeRun(key, e.Value); derr == nil && cur.Claim == rec.Claim && cur.State == rec.State {
				return e.Revision, nil // ours: the reply was lost
			}
			if prevRev == 0 || e.Revision != prevRev {
				return 0, errTaken
			}
		case errors.Is(gerr, kv.ErrNotFound):
			if prevRev != 0 {
				return 0, errTaken
			}
		}
		if !j.sleep(ctx, backoff) {
			return 0, fmt.Errorf("%w: writing %q: %w", kv.ErrUnavailable, key, context.Cause(ctx))
		}
		backoff = min(backoff*2, time.Second)
	}
}

// checkGone looks at a tick whose run lease went away. A record still claimed or running
// with no lease belongs to a dead run: it is recorded lost (compare-and-set) and, with
// WithRetryLost, claimed again with the next attempt.
func (j *job) checkGone(key string) error {
	ctx, cancel := j.opCtx(j.ctx)
	e, err := j.readDecisive(ctx, key)
	cancel()
	if errors.Is(err, kv.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	rec, derr := decodeRun(key, e.Value)
	if derr != nil {
		j.garbage(key, "leaving it alone", derr)
		return nil
	}
	rev := e.Revision
	if rec.State == StateClaimed || rec.State == StateRunning {
		// The record was read before the lease: a newer attempt would have created its lease
		// before changing the record, so the update below fails if one began.
		ctx, cancel := j.opCtx(j.ctx)
		_, err := j.readDecisive(ctx, leaseKeyOf(key))
		cancel()
		if err == nil {
			return nil // a live lease: the run (or a new attempt) is going
		} else if !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		lost := rec
		lost.Token = rec.tokenAt(rev)
		lost.State, lost.Ended = StateLost, j.clock().UTC()
		lost.Reason = "lease expired"
		lost.Error = fmt.Sprintf("the run lease of node %s ran out: the node died, stopped or was cut off mid-run", rec.Node)
		ctx, cancel = j.opCtx(j.ctx)
		nrev, err := j.s.bucket.Update(ctx, key, lost.encode(), rev, j.recordTTL(lost.State))
		cancel()
		if errors.Is(err, kv.ErrConflict) {
			return nil // someone else wrote it first
		} else if err != nil {
			return err
		}
		j.log.Info("run lost", "tick", key, "node", rec.Node, "attempt", rec.Attempt)
		j.publish(EventFailed, lost, "lost: lease of "+rec.Node+" expired")
		j.updateLast(lost, nrev)
		rec, rev = lost, nrev
	}
	if rec.State != StateLost || !j.opts.retryLost {
		return nil
	}
	if rec.Attempt >= MaxAttempts {
		j.log.Warn("lost run not retried: attempts exhausted", "tick", key, "attempts", rec.Attempt)
		return nil
	}
	out, tick, _, err := j.claim(j.ctx, tickReq{t: rec.Tick, manual: rec.Manual, reason: "retry", attempt: rec.Attempt + 1, prevRev: rev})
	if err == nil && out == outStarted {
		j.log.Info("retrying lost run", "tick", key, "attempt", tick.Attempt, "token", tick.Token)
	}
	return err
}

// recordMissed creates the record of a missed tick. It reports false when the tick was
// claimed after all.
func (j *job) recordMissed(ctx context.Context, t time.Time, why string) (bool, error) {
	now := j.clock().UTC()
	rec := Run{Job: j.name, Tick: t.UTC(), Node: j.s.node, Attempt: 1, State: StateMissed, Reason: why,
		Claimed: now, Ended: now, Claim: nuid.Next()}
	key := tickKey(j.name, t, false)
	rev, err := j.writeRecord(ctx, key, rec, 0)
	if errors.Is(err, errTaken) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	rec.Token = rev
	j.publish(EventMissed, rec, why)
	j.updateLast(rec, rev)
	return true, nil
}

// updateLast copies rec, read or written at revision rev, to <job>.last unless that holds
// a later tick or a newer revision of the same one.
func (j *job) updateLast(rec Run, rev uint64) {
	rec.Revision = rev
	key := lastKey(j.name)
	ctx, cancel := context.WithTimeout(context.Background(), j.s.timing.TTL)
	defer cancel()
	newer := func(cur Run) bool { return cur.Tick.After(rec.Tick) || cur.Tick.Equal(rec.Tick) && cur.Revision >= rev }
	j.mu.Lock()
	mine, mineRev := j.lastWritten, j.lastWrittenRev
	j.mu.Unlock()
	if mineRev != 0 {
		// Still this node's copy? Then no read is needed: a conflict means someone wrote since.
		if newer(mine) {
			return
		}
		wctx, wcancel := j.opCtx(ctx)
		nrev, err := j.s.bucket.Update(wctx, key, rec.encode(), mineRev, 0)
		wcancel()
		if err == nil {
			j.noteLast(rec, nrev)
			return
		}
	}
	for i := 0; i < 5; i++ {
		gctx, gcancel := j.opCtx(ctx)
		e, err := j.s.bucket.Get(gctx, key)
		gcancel()
		wctx, wcancel := j.opCtx(ctx)
		var nrev uint64
		switch {
		case errors.Is(err, kv.ErrNotFound):
			nrev, err = j.s.bucket.Create(wctx, key, rec.encode(), 0)
		case err != nil:
		default:
			if cur, derr := decodeRun(key, e.Value); derr == nil && newer(cur) {
				wcancel()
				return
			}
			nrev, err = j.s.bucket.Update(wctx, key, rec.encode(), e.Revision, 0)
		}
		wcancel()
		if err == nil {
			j.noteLast(rec, nrev)
			return
		}
		if !errors.Is(err, kv.ErrConflict) && !errors.Is(err, kv.ErrExists) {
			j.log.Debug("cannot update the last run record", "err", err)
			return
		}
	}
}

// noteLast remembers that this node wrote rec to <job>.last at revision rev (a copy
// written concurrently by another of its runs may have come later).
func (j *job) noteLast(rec Run, rev uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if rev > j.lastWrittenRev {
		j.lastWritten, j.lastWrittenRev = rec, rev
	}
}

// publish sends a job event. The event has no field for the tick, so the reason ends with
// it.
func (j *job) publish(typ string, rec Run, reason string) {
	if j.s.events == nil {
		return
	}
	j.s.events.Publish(ownership.Event{Kind: ownership.KindJob, Type: typ, Name: j.name, Token: rec.Token,
		Reason: reason + " (tick " + tickToken(rec.Tick, rec.Manual) + ", " + rec.Tick.UTC().Format(time.RFC3339) + ")",
		Error:  rec.Error})
}
