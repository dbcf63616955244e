package ownership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jetcoord/coordinator/kv"
)

// observation is what this node last saw of a worker's claim.
type observation struct {
	known     bool
	present   bool   // a live claim exists
	rev       uint64 // revision of the entry or marker seen
	claim     kv.Claim
	malformed error
	expired   bool      // the last change was the server's expiry marker
	cleared   bool      // this node just cleared a claim that ran out
	seenAt    time.Time // local (monotonic) time this revision was first seen
}

// worker is the state machine of one registered name on this node. One goroutine (run)
// drives it; the watcher feeds it observations through observe.
type worker struct {
	e    *Engine
	name string
	fn   WorkerFunc
	opts workerOptions

	notify  chan struct{} // a new observation arrived (capacity 1)
	stop    chan struct{} // closed by requestStop
	done    chan struct{} // closed when run returns
	handoff chan string   // hand the worker over: stop, release, hold off (capacity 1)

	mu        sync.Mutex
	obs       observation
	owns      bool
	holdUntil time.Time // after a handoff, leave the worker to others until then
	stopOnce  sync.Once
}

func newWorker(e *Engine, name string, fn WorkerFunc, o workerOptions) *worker {
	return &worker{e: e, name: name, fn: fn, opts: o,
		notify: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		handoff: make(chan string, 1)}
}

func (w *worker) requestStop() { w.stopOnce.Do(func() { close(w.stop) }) }

func (w *worker) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

func (w *worker) owning() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.owns
}

func (w *worker) setOwning(v bool) {
	w.mu.Lock()
	changed := w.owns != v
	w.owns = v
	w.mu.Unlock()
	if changed {
		if v {
			w.e.metrics.Owned(1)
		} else {
			w.e.metrics.Owned(-1)
		}
	}
}

// observe records o unless an observation of the same or a newer revision is already known,
// so that the takeover timer runs from when a revision was first seen.
func (w *worker) observe(o observation) {
	w.mu.Lock()
	if w.obs.known && o.rev <= w.obs.rev && !(o.rev == 0 && !o.present) {
		w.mu.Unlock()
		return
	}
	if o.rev == 0 && w.obs.known {
		// A Get that found nothing carries no revision: keep the last one for ordering.
		o.rev = w.obs.rev
	}
	o.seenAt = w.e.cfg.Clock.Now()
	w.obs = o
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// poke wakes the worker's loop to look at its state again.
func (w *worker) poke() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *worker) snapshot() observation {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.obs
}

func (w *worker) log() *slog.Logger { return w.e.log.With("worker", w.name) }

// refresh reads the claim from the store and records what it found.
func (w *worker) refresh(ctx context.Context) error {
	actx, cancel := context.WithTimeout(ctx, w.e.cfg.RenewInterval)
	defer cancel()
	ce, err := w.e.claims.GetClaim(actx, w.name)
	switch {
	case errors.Is(err, kv.ErrNotFound):
		w.observe(observation{known: true})
		return nil
	case err != nil:
		return err
	}
	w.observe(observation{known: true, present: true, rev: ce.Revision, claim: ce.Claim, malformed: ce.Err})
	return nil
}

// wait blocks for d, a new observation or a stop; it reports false on stop.
func (w *worker) wait(d time.Duration) bool {
	t := w.e.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.stop:
		return false
	case <-w.notify:
	case <-t.C():
	}
	return true
}

// run contends for the worker and runs it while owning it, until stopped.
func (w *worker) run() {
	defer close(w.done)
	e := w.e
	retry := e.cfg.RenewInterval / 4
	for !w.stopped() {
		o := w.snapshot()
		if !o.known {
			if err := w.refresh(e.ctx); err != nil {
				w.log().Debug("cannot read claim; retrying", "err", err)
				if !w.wait(retry) {
					return
				}
			}
			continue
		}
		if hold := w.holdOff(); hold > 0 {
			if !w.wait(hold) {
				return
			}
			continue
		}
		switch {
		case !o.present:
			// The preferred node claims at once, the others after the claim grace — except
			// after a lease ran out, when the preferred node is likely the dead one: then
			// whoever is first takes it, and placement moves it later if need be.
			if left := e.claimDelay(w.name) - e.cfg.Clock.Now().Sub(o.seenAt); left > 0 && !o.expired && !o.cleared {
				if !w.wait(left) {
					return
				}
				continue
			}
			w.claim(o)
		case o.malformed == nil && o.claim.Node == e.node && o.claim.Incarnation == e.incarnation:
			// Our own claim from a term that ended (fenced, or a Create whose reply was lost).
			// Nothing of ours runs, so clearing it is a release.
			w.clear(o, false)
		default:
			// Someone else's claim: it is dead once TTL passes with no newer revision.
			left := e.cfg.TTL - e.cfg.Clock.Now().Sub(o.seenAt)
			if left > 0 {
				if !w.wait(left) {
					return
				}
				continue
			}
			w.clear(o, true)
		}
	}
}

// holdOff returns how long this node must leave the worker to others: after a handoff, and
// while the node drains.
func (w *worker) holdOff() time.Duration {
	e := w.e
	if e.isDraining() {
		return e.cfg.TTL
	}
	if e.settling() {
		return e.cfg.RenewInterval / 4 // membership changes wake us sooner
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.holdUntil.Sub(e.cfg.Clock.Now())
}

// requestHandoff asks the owner loop to hand the worker over.
func (w *worker) requestHandoff(reason string) {
	select {
	case w.handoff <- reason:
	default:
	}
}

// claim tries to create the claim and, on success, runs the term.
func (w *worker) claim(o observation) {
	e := w.e
	sent := e.cfg.Clock.Now()
	c := kv.Claim{Worker: w.name, Node: e.node, Incarnation: e.incarnation,
		Acquired: sent.UTC(), Renewed: sent.UTC(), TTL: kv.Duration(e.cfg.TTL), State: kv.StateRunning}
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RenewInterval)
	var rev uint64
	var err error
	if e.acquireOp(ctx) {
		rev, err = e.claims.Create(ctx, w.name, c.Encode(), e.cfg.TTL)
		e.releaseOp()
	} else {
		err = ctx.Err()
	}
	cancel()
	switch {
	case err == nil:
		e.metrics.ClaimAttempt(w.name, true)
		if o.expired {
			e.metrics.Takeover(w.name)
			e.publish(Event{Kind: KindWorker, Type: EventExpired, Name: w.name, Reason: "ttl"})
		}
		c.Token = rev
		if e.Preferred(w.name) != e.node {
			// Claimed as a fallback: once things settle, hand it to its preferred node.
			e.kickRebalance()
		}
		w.term(rev, c, sent)
	case errors.Is(err, kv.ErrExists):
		e.metrics.ClaimAttempt(w.name, false)
		if err := w.refresh(e.ctx); err != nil {
			w.wait(e.cfg.RenewInterval / 4)
		}
	default:
		// The Create may have landed even though its reply did not: the watcher will show
		// our claim and run() clears it.
		w.log().Debug("claim attempt failed; retrying", "err", err)
		w.wait(e.cfg.RenewInterval / 4)
	}
}

// clear deletes a claim at the revision seen: a dead foreign claim (stale) or our own
// leftover. Compare-and-set makes it a no-op if anything was written since.
func (w *worker) clear(o observation, stale bool) {
	e := w.e
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RenewInterval)
	err := e.claims.Delete(ctx, w.name, o.rev)
	cancel()
	switch {
	case err == nil:
		if stale {
			from := o.claim.Node
			if o.malformed != nil {
				from = "unknown"
			}
			w.log().Info("claim not renewed within TTL; taking over", "previous", from, "revision", o.rev)
			e.metrics.Takeover(w.name)
			e.publish(Event{Kind: KindWorker, Type: EventExpired, Name: w.name, From: from, Reason: "ttl"})
		}
		w.observe(observation{known: true, rev: o.rev + 1, cleared: stale})
	case errors.Is(err, kv.ErrConflict):
		if err := w.refresh(e.ctx); err != nil {
			w.wait(e.cfg.RenewInterval / 4)
		}
	default:
		w.log().Debug("clearing claim failed; retrying", "err", err)
		w.wait(e.cfg.RenewInterval / 4)
	}
}

// term runs one ownership term: start the worker, renew, and end the term on a stop, a
// lost claim or a passed deadline.
func (w *worker) term(rev uint64, c kv.Claim, sent time.Time) {
	e := w.e
	clock := e.cfg.Clock
	token := rev
	lease := newLease(w.name, e.node, token, sent.Add(e.cfg.RenewDeadline))
	w.setOwning(true)
	defer w.setOwning(false)
	e.publish(Event{Kind: KindWorker, Type: EventClaimed, Name: w.name, Token: token})
	w.log().Info("claimed", "token", token)

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	// The fence is a timer armed at every renewal, not a step of the renew loop: if the loop
	// is stuck (paused process, blocked call), the worker's context still ends on time.
	dl, _ := lease.Deadline()
	fence := clock.AfterFunc(dl.Sub(clock.Now()), func() { cancel(ErrLeaseExpired) })
	defer fence.Stop()

	lease.e, lease.ctx = e, ctx
	lease.loadState()
	unserve := w.serve(ctx, lease)
	defer unserve()
	runDone := make(chan struct{})
	e.goFunc(func() {
		defer close(runDone)
		w.runWorker(ctx, lease)
	})

	c.Token = token
	renew := clock.NewTimer(e.cfg.RenewInterval)
	defer renew.Stop()
	var stopDeadline <-chan time.Time
	var unacked time.Time // send time of the first renewal since the last success that got no reply
	stopping := false
	handoff := ""
	ended := ctx.Done()
	stopC := w.stop // nil once stopping: a closed channel in a select would spin the loop
	var stopTimer Timer
	defer func() {
		if stopTimer != nil {
			stopTimer.Stop()
		}
	}()
	beginStop := func() {
		stopping = true
		stopC = nil
		ended = nil // the term now ends when the worker has stopped
		cancel(ErrStopping)
		stopTimer = clock.NewTimer(e.cfg.ShutdownGrace)
		stopDeadline = stopTimer.C()
	}

	for {
		select {
		case <-stopC:
			beginStop()
		case reason := <-w.handoff:
			if !stopping {
				handoff = reason
				w.log().Debug("handing over", "reason", reason)
				beginStop()
			}
		case <-stopDeadline:
			w.log().Error("worker did not stop within ShutdownGrace; leaving its claim to expire", "grace", e.cfg.ShutdownGrace)
			return
		case <-runDone:
			runDone = nil
			if stopping {
				if handoff == "" {
					w.release(rev, token, "stop")
					return
				}
				e.metrics.Handoff(w.name)
				e.publish(Event{Kind: KindWorker, Type: EventMoved, Name: w.name, Token: token, Reason: handoff,
					From: e.node, To: e.Preferred(w.name)})
				w.mu.Lock()
				w.holdUntil = clock.Now().Add(e.cfg.ClaimGrace + e.cfg.RenewInterval)
				w.mu.Unlock()
				w.release(rev, token, handoff)
				return
			}
			if ctx.Err() != nil {
				w.endTerm(ctx, rev, token, nil)
				return
			}
			// The function finished and its policy says not to run it again: keep the claim.
		case <-w.notify:
			o := w.snapshot()
			if o.rev > rev && !(o.present && o.malformed == nil && o.claim.Incarnation == e.incarnation) {
				cancel(ErrLeaseLost)
			}
		case <-ended:
			w.endTerm(ctx, rev, token, runDone)
			return
		case <-renew.C():
			if f := e.testBeforeRenew; f != nil {
				f(w.name)
			}
			next, nrev, err := w.renew(rev, c, lease, stopping)
			if errors.Is(err, kv.ErrConflict) && !unacked.IsZero() {
				// An earlier attempt whose reply was lost may have landed: then the claim is
				// still ours, renewed no earlier than that attempt was sent.
				if landed, ok := w.ownLanded(token); ok {
					next, nrev, err = unacked.Add(e.cfg.RenewDeadline), landed, nil
				}
			}
			if err == nil {
				unacked = time.Time{}
				rev = nrev
				if ctx.Err() == nil || stopping {
					// A renewal that came back after the deadline does not revive the term.
					if d, _ := lease.Deadline(); clock.Now().Before(d) {
						lease.extend(next)
						fence.Reset(next.Sub(clock.Now()))
					}
				}
				renew.Reset(e.cfg.RenewInterval)
			} else if errors.Is(err, kv.ErrConflict) {
				cancel(ErrLeaseLost)
				renew.Reset(e.cfg.RenewInterval)
			} else {
				if unacked.IsZero() {
					unacked = next.Add(-e.cfg.RenewDeadline) // this attempt's send time
				}
				w.log().Warn("renewal failed; retrying", "err", err)
				renew.Reset(e.cfg.RenewInterval / 4)
			}
		}
	}
}

// ownLanded reads the claim and reports its revision if it is still this term's.
func (w *worker) ownLanded(token uint64) (uint64, bool) {
	e := w.e
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RenewInterval)
	defer cancel()
	ce, err := e.claims.GetClaim(ctx, w.name)
	if err != nil || ce.Err != nil || ce.Claim.Incarnation != e.incarnation || ce.Token() != token {
		return 0, false
	}
	return ce.Revision, true
}

// renew writes the claim again at rev; it returns the new deadline and revision.
func (w *worker) renew(rev uint64, c kv.Claim, lease *Lease, stopping bool) (time.Time, uint64, error) {
	e := w.e
	clock := e.cfg.Clock
	sent := clock.Now()
	c.Renewed = sent.UTC()
	if stopping {
		c.State = kv.StateStopping
	}
	timeout := e.cfg.RenewInterval
	if d, _ := lease.Deadline(); !stopping && d.Sub(sent) < timeout && d.Sub(sent) > 0 {
		timeout = d.Sub(sent)
	}
	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	nrev, err := e.claims.Update(ctx, w.name, c.Encode(), rev, e.cfg.TTL)
	e.metrics.Renewal(w.name, clock.Now().Sub(sent), err)
	return sent.Add(e.cfg.RenewDeadline), nrev, err
}

// endTerm handles a term that ended without a planned stop: the lease was lost or its
// deadline passed. It waits for the worker up to FenceGrace.
func (w *worker) endTerm(ctx context.Context, rev, token uint64, runDone <-chan struct{}) {
	e := w.e
	cause := context.Cause(ctx)
	reason := "deadline"
	if errors.Is(cause, ErrLeaseLost) {
		reason = "lost"
	}
	e.metrics.LeaseLost(w.name, reason)
	w.log().Warn("lease lost; worker stopped", "reason", reason, "token", token)
	if runDone != nil {
		t := e.cfg.Clock.NewTimer(e.cfg.FenceGrace)
		defer t.Stop()
		select {
		case <-runDone:
		case <-t.C():
			w.log().Error("worker did not return within FenceGrace after losing its lease; another node may start it",
				"grace", e.cfg.FenceGrace)
		}
	}
	e.publish(Event{Kind: KindWorker, Type: EventLost, Name: w.name, Token: token, Reason: reason})
	if reason == "deadline" {
		// Our last claim may still stand; run() clears it once the store answers.
		w.observe(observation{known: true, present: true, rev: rev,
			claim: kv.Claim{Worker: w.name, Node: e.node, Incarnation: e.incarnation}})
	} else if err := w.refresh(e.ctx); err != nil {
		w.observe(observation{known: true, present: true, rev: rev + 1})
	}
}

// release deletes our claim after a planned stop, with a fresh bounded context: the engine
// may be shutting down.
func (w *worker) release(rev, token uint64, reason string) {
	e := w.e
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.ShutdownGrace)
	defer cancel()
	if !e.acquireRelease(ctx) {
		w.log().Warn("could not release claim in time; it will expire")
		return
	}
	defer e.doneRelease()
	released := func() {
		e.publish(Event{Kind: KindWorker, Type: EventReleased, Name: w.name, Token: token, Reason: reason})
		w.log().Debug("released", "token", token) // a paced stop logs its progress
	}
	for {
		actx, acancel := context.WithTimeout(ctx, e.cfg.RenewInterval)
		err := e.claims.Delete(actx, w.name, rev)
		acancel()
		if err == nil {
			released()
			return
		}
		if errors.Is(err, kv.ErrConflict) {
			// A renewal or an earlier delete whose reply was lost may have landed: look.
			actx, acancel := context.WithTimeout(ctx, e.cfg.RenewInterval)
			ce, gerr := e.claims.GetClaim(actx, w.name)
			acancel()
			switch {
			case errors.Is(gerr, kv.ErrNotFound):
				released()
				return
			case gerr == nil && ce.Err == nil && ce.Claim.Incarnation == e.incarnation && ce.Token() == token:
				rev = ce.Revision // still ours, at a newer revision
				continue
			case gerr == nil:
				w.log().Debug("claim taken over before the release", "owner", ce.Claim.Node)
				return
			}
			err = gerr
		}
		if ctx.Err() != nil {
			w.log().Warn("could not release claim; it will expire", "err", err)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// runWorker calls the worker function, again after failures as the restart policy says,
// until ctx ends.
func (w *worker) runWorker(ctx context.Context, lease *Lease) {
	e := w.e
	backoff := e.cfg.RestartBackoff
	for {
		started := e.cfg.Clock.Now()
		e.publish(Event{Kind: KindWorker, Type: EventStarted, Name: w.name, Token: lease.Token()})
		err := w.call(ctx, lease)
		ran := e.cfg.Clock.Now().Sub(started)
		if ctx.Err() != nil {
			e.publish(Event{Kind: KindWorker, Type: EventStopped, Name: w.name, Token: lease.Token(),
				Reason: reasonOf(context.Cause(ctx))})
			return
		}
		if err != nil {
			e.metrics.WorkerFailed(w.name)
			w.log().Error("worker failed", "err", err, "ran", ran.Round(time.Millisecond), "restart_in", backoff)
			e.publish(Event{Kind: KindWorker, Type: EventFailed, Name: w.name, Token: lease.Token(), Error: err.Error()})
		} else {
			e.publish(Event{Kind: KindWorker, Type: EventStopped, Name: w.name, Token: lease.Token(), Reason: "returned"})
		}
		switch w.opts.restart {
		case RestartNever:
			return
		case RestartOnFailure:
			if err == nil {
				return
			}
		}
		if ran >= time.Minute {
			backoff = e.cfg.RestartBackoff
		}
		t := e.cfg.Clock.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		backoff = min(backoff*2, e.cfg.RestartBackoffMax)
	}
}

func reasonOf(cause error) string {
	switch {
	case errors.Is(cause, ErrStopping):
		return "stop"
	case errors.Is(cause, ErrLeaseLost):
		return "lost"
	case errors.Is(cause, ErrLeaseExpired):
		return "deadline"
	}
	return "cancelled"
}

// call runs the worker function; a panic becomes an error so that it cannot take the node down.
func (w *worker) call(ctx context.Context, lease *Lease) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return w.fn(ctx, lease)
}
