package scheduler

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jetcoord/coordinator/kv"
	"github.com/jetcoord/coordinator/lease"
)

// run is one attempt of a tick on this node, from its claim to its final record.
type run struct {
	j     *job
	key   string
	claim string // the attempt's claim id, in its record and lease
	req   tickReq
	rec   Run    // as last written; only the run's own goroutine touches it once started
	rev   uint64 // revision of rec
	lease *runLease

	ctx    context.Context // ends on Close/Remove, lease loss, replacement
	cancel context.CancelCauseFunc
	done   chan struct{}

	mu         sync.Mutex
	stopReason string
}

func newRun(j *job, key string, rec Run, req tickReq) *run {
	ctx, cancel := context.WithCancelCause(j.ctx)
	return &run{j: j, key: key, claim: rec.Claim, req: req, rec: rec, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// replaced stops the run because a newer tick replaces it.
func (r *run) replaced(reason string) {
	r.mu.Lock()
	if r.stopReason == "" {
		r.stopReason = reason
	}
	r.mu.Unlock()
	r.cancel(ErrReplaced)
}

func (r *run) execute() {
	j := r.j
	if j.opts.overlap == Replace {
		r.replaceOthers()
	}
	started := false
	var fnErr error
	if r.ctx.Err() == nil {
		rec := r.rec
		var err error
		rev := r.rev
		if rec.State != StateRunning { // Replace: claimed, then running once the others stopped
			rec.State, rec.Started = StateRunning, j.clock().UTC()
			rev, err = j.writeRecord(r.ctx, r.key, rec, r.rev)
		}
		switch {
		case err == nil:
			r.rec, r.rev = rec, rev
			j.publish(EventFired, rec, rec.Reason)
			started = true
			tick := j.tickOf(rec)
			tick.lease = r.lease
			fnErr = j.call(r.ctx, tick)
		case errors.Is(err, errTaken):
			j.log.Warn("tick record changed before the run started; not running it", "tick", r.key)
			r.abandon()
			return
		default:
			j.log.Warn("cannot mark the run started", "tick", r.key, "err", err)
		}
	}
	r.finish(started, fnErr)
}

// call runs the job function, with the job's timeout, turning a panic into an error.
func (j *job) call(ctx context.Context, tick Tick) (err error) {
	if j.opts.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, j.opts.timeout)
		defer cancel()
	}
	defer func() {
		if p := recover(); p != nil {
			j.log.Error("job panicked", "tick", tick.Time, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return j.fn(ctx, tick)
}

// lossReason says why a run whose context ended with cause counts as lost, or "".
func lossReason(cause error) string {
	switch {
	case errors.Is(cause, ErrLeaseExpired):
		return "lease expired"
	case errors.Is(cause, ErrLeaseLost):
		return "lease lost"
	case errors.Is(cause, ErrClosed):
		return "shutdown"
	case errors.Is(cause, ErrRemoved):
		return "removed"
	}
	return ""
}

// finish writes the run's final record, publishes its event, updates <job>.last and
// releases the lease. A lost run's lease is released as lost, so that the other nodes
// look at it (and retry it with WithRetryLost).
func (r *run) finish(started bool, fnErr error) {
	j := r.j
	var cause error
	if r.ctx.Err() != nil {
		cause = context.Cause(r.ctx)
	}
	rec := r.rec
	rec.Ended = j.clock().UTC()
	if !started {
		rec.Started = time.Time{} // the claim said it starts; it did not
	}
	event, eventReason := EventSucceeded, rec.Reason
	switch why := lossReason(cause); {
	case started && fnErr == nil:
		rec.State = StateSucceeded
	case why != "":
		rec.State, rec.Reason = StateLost, why
		rec.Error = cause.Error()
		if fnErr != nil && !errors.Is(fnErr, context.Canceled) {
			rec.Error += ": " + fnErr.Error()
		}
		event, eventReason = EventFailed, "lost: "+why
	default:
		rec.State = StateFailed
		switch {
		case fnErr != nil:
			rec.Error = fnErr.Error()
		case cause != nil:
			rec.Error = cause.Error()
		default:
			rec.Error = "the run did not start"
		}
		switch {
		case errors.Is(cause, ErrReplaced):
			r.mu.Lock()
			rec.Reason = r.stopReason
			r.mu.Unlock()
		case j.opts.timeout > 0 && errors.Is(fnErr, context.DeadlineExceeded):
			rec.Reason = fmt.Sprintf("timeout after %v", j.opts.timeout)
		}
		event, eventReason = EventFailed, rec.Reason
	}
	ctx, cancel := context.WithTimeout(context.Background(), j.s.timing.TTL)
	defer cancel()
	rev, err := j.writeRecord(ctx, r.key, rec, r.rev)
	switch {
	case err == nil:
		j.publish(event, rec, eventReason)
		j.updateLast(rec, rev)
		state := leaseDone
		if rec.State == StateLost {
			state = leaseLost
		}
		r.lease.release(state)
	case errors.Is(err, errTaken):
		j.log.Warn("the tick record changed while the run went on (recorded lost by another node?); its result is not recorded",
			"tick", r.key, "state", rec.State)
		r.lease.release(leaseDone)
	default:
		j.log.Warn("cannot record the end of the run; another node records it lost once its lease runs out",
			"tick", r.key, "state", rec.State, "err", err)
		r.lease.stopKeeping()
	}
	r.forget()
}

// abandon drops a run whose record is not this claim's any more.
func (r *run) abandon() {
	r.lease.release(leaseDone)
	r.forget()
}

func (r *run) forget() {
	j := r.j
	j.mu.Lock()
	if j.runs[r.key] == r {
		delete(j.runs, r.key)
	}
	j.notifyLocked()
	j.mu.Unlock()
	r.cancel(nil)
	close(r.done)
}

// replaceOthers asks every other run of the job to stop — through its lease, which its
// node watches and renews — and waits until each is known to have stopped: a local run has
// returned; a remote run's lease was released by its node, or went away and this node's
// own clock says a lease TTL has passed since the last revision of it seen here. A run
// whose node keeps renewing its lease while it stops is waited for as long as it takes,
// and a run whose node is cut off for at most a lease TTL: two runs never overlap.
func (r *run) replaceOthers() {
	j := r.j
	reason := fmt.Sprintf("replaced by %s (token %d) on %s", r.key, r.rec.Token, j.s.node)
	asked := map[string]bool{}
	waitingSince := j.clock()
	warned := false
	for {
		var remote []string
		var local []*run
		now := j.clock()
		j.mu.Lock()
		for k, o := range j.runs {
			if k != r.key {
				local = append(local, o)
			}
		}
		for k, v := range j.leases {
			if _, mine := j.runs[k]; k != r.key && !mine && !v.malformed && v.rec.State == leaseRunning {
				remote = append(remote, k)
			}
		}
		fading, until := j.fadingLocked(r.key, now)
		changed := j.changed
		j.mu.Unlock()
		if len(remote)+len(local) == 0 && fading == "" {
			return
		}
		for _, o := range local {
			o.replaced(reason)
		}
		for _, k := range remote {
			if !asked[k] {
				asked[k] = true
				j.requestStop(r.ctx, k, reason)
			}
		}
		if !warned && now.Sub(waitingSince) > j.s.timing.TTL {
			warned = true
			j.log.Warn("earlier runs are still stopping; the new run waits for them", "tick", r.key,
				"runs", append(remote, fading), "local", len(local))
		}
		var timeout <-chan time.Time
		var t lease.Timer
		if fading != "" {
			t = j.s.opts.clock.NewTimer(until.Sub(now))
			timeout = t.C()
		}
		select {
		case <-r.ctx.Done():
		case <-changed:
		case <-timeout:
		}
		if t != nil {
			t.Stop()
		}
		if r.ctx.Err() != nil {
			return
		}
	}
}

// requestStop writes a stop request into the run lease of tick key (compare-and-set,
// keeping its TTL). The node holding it sees the change through its watch, or at its next
// renewal, and cancels the run with ErrReplaced.
func (j *job) requestStop(ctx context.Context, key, reason string) {
	lk := leaseKeyOf(key)
	for i := 0; i < 5; i++ {
		gctx, cancel := j.opCtx(ctx)
		e, err := j.s.bucket.Get(gctx, lk)
		cancel()
		if err != nil {
			return
		}
		lr, derr := decodeLease(lk, e.Value)
		if derr != nil || lr.Stop != "" || lr.State != leaseRunning {
			return
		}
		lr.Stop = reason
		ttl := max(time.Duration(lr.TTL), time.Second)
		wctx, cancel := j.opCtx(ctx)
		_, err = j.s.bucket.Update(wctx, lk, lr.encode(), e.Revision, ttl)
		cancel()
		if !errors.Is(err, kv.ErrConflict) {
			if err != nil {
				j.log.Debug("cannot ask a run to stop", "tick", key, "err", err)
			}
			return
		}
	}
}
