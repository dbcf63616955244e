package ownership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nuid"

	"github.com/jetcoord/coordinator/kv"
)

// observation is what this node last saw of a worker's claim.
type observation struct {
	known     bool
	present   bool   // a live claim exists
	rev       uint64 // revision of the entry or marker seen
	claim     kv.Claim
	malformed error
	expired   bool // the last change was an expiry marker or a purge
	released  bool // the last change was the owner's release: its worker stopped
	cleared   bool // this node just cleared a claim that ran out on its own clock
	// never: nothing is kept for the key — never claimed, or so long ago that its markers
	// have gone — so no worker of it can still run.
	never bool
	// unseen: never, as the first watch delivery says; ignored once anything was observed.
	unseen bool
	// seenAt is the local (monotonic) time this revision was first seen. For a claim that
	// went away without a release (deleted or purged by anyone, expired on the server's
	// clock) it stays the time the last live claim was seen: the takeover timer runs on.
	seenAt time.Time
}

// observationOf turns a change of the claims bucket into an observation.
func observationOf(c kv.Change) observation {
	o := observation{known: true, rev: c.Revision, present: c.Op == kv.OpPut, expired: c.Op == kv.OpExpire}
	switch c.Op {
	case kv.OpPut:
		o.claim, o.malformed = kv.DecodeClaim(c.Key, c.Value)
	case kv.OpDelete:
		_, o.released = kv.DecodeRelease(c.Key, c.Value)
	}
	return o
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

	waitingFor string // the live term this registration waits for (logged once)
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
	if o.unseen && w.obs.known {
		w.mu.Unlock()
		return
	}
	if w.obs.known && o.rev <= w.obs.rev && !(o.rev == 0 && !o.present) {
		w.mu.Unlock()
		return
	}
	if o.rev == 0 && w.obs.known {
		if !w.obs.present {
			// A read that found nothing tells nothing new after an absence already seen;
			// taking it would restart the takeover timer.
			w.mu.Unlock()
			return
		}
		// A read that found nothing carries no revision: keep the last one for ordering.
		o.rev = w.obs.rev
	}
	o.seenAt = w.e.cfg.Clock.Now()
	if !o.present && !o.released && !o.cleared && w.obs.known && !w.obs.released && !w.obs.cleared && !w.obs.never {
		// Gone without its owner's word: the worker may still run until a TTL after the
		// last write we saw. A delete, a purge or an expiry marker keeps that timer; none
		// of them skips it.
		o.seenAt = w.obs.seenAt
	}
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

// refresh reads the claim and records what it found. Any replica may answer: what it says
// only ever leads to a compare-and-set write, and a stale answer to a failed one.
func (w *worker) refresh(ctx context.Context) error {
	actx, cancel := context.WithTimeout(ctx, w.e.cfg.RenewInterval)
	defer cancel()
	c, err := w.e.claims.LatestDirect(actx, w.name)
	switch {
	case errors.Is(err, kv.ErrNotFound):
		w.observe(observation{known: true, never: true})
		return nil
	case err != nil:
		return err
	}
	w.e.noteRevision(c.Revision)
	w.observe(observationOf(c))
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
			select {
			case <-e.synced:
			default:
				// The first watch delivers every claim: wait for it rather than read each.
				select {
				case <-w.stop:
					return
				case <-e.synced:
				case <-w.notify:
				}
				continue
			}
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
			if t := e.termRunning(w.name); t != nil {
				// An earlier term of this name on this node may still run: its command
				// not reaped, its function not returned. Its end pokes us.
				w.waitTerm(t)
				if !w.wait(e.cfg.TTL) {
					return
				}
				continue
			}
			if !o.released && !o.cleared && !o.never {
				// Deleted, purged or expired without the owner's word: take over only
				// when our own clock says a TTL has passed since the last claim we saw.
				if left := e.cfg.TTL - e.cfg.Clock.Now().Sub(o.seenAt); left > 0 {
					if !w.wait(left) {
						return
					}
					continue
				}
			} else if left := e.claimDelay(w.name) - e.cfg.Clock.Now().Sub(o.seenAt); left > 0 && !o.cleared {
				// Released, or never claimed: the preferred node claims at once, the
				// others after the claim grace. A lease that ran out goes to whoever is
				// first (the preferred node is likely the dead one); placement moves it
				// later if need be.
				if !w.wait(left) {
					return
				}
				continue
			}
			w.claim(o)
		case o.malformed == nil && o.claim.Node == e.node && o.claim.Incarnation == e.incarnation:
			if t := e.liveTerm(w.name, o.claim.Term); t != nil {
				// Our claim, and its worker may still run: never clear it. It is left to
				// expire, or released once the worker stops.
				w.waitTerm(t)
				if !w.wait(e.cfg.TTL) {
					return
				}
				continue
			}
			// Our own claim from a term whose worker has stopped (fenced, a stop that
			// outran ShutdownGrace, or a Create whose reply was lost): clearing it is a
			// release.
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

// waitTerm logs, once per term, that this registration waits for an earlier term.
func (w *worker) waitTerm(t *liveTerm) {
	w.mu.Lock()
	first := w.waitingFor != t.id
	w.waitingFor = t.id
	w.mu.Unlock()
	if first {
		w.log().Warn("an earlier term of this worker still runs on this node; not claiming it until that worker stops",
			"token", t.token, "running_for", w.e.cfg.Clock.Now().Sub(t.since).Round(time.Millisecond))
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
	if e.termRunning(w.name) != nil {
		return // run() waits for it
	}
	sent := e.cfg.Clock.Now()
	c := kv.Claim{Worker: w.name, Node: e.node, Incarnation: e.incarnation, Term: nuid.Next(),
		Acquired: sent.UTC(), Renewed: sent.UTC(), TTL: kv.Duration(e.cfg.TTL), State: kv.StateRunning,
		Meta: map[string]string{MetaCallKey: e.callKey.public}}
	// Compare-and-set on the key's last change seen (r; 0 when nothing is kept for it):
	// every earlier term's token is at most its first record's revision, which is at most
	// r, and this record lands above r. With nothing kept, the bucket's last revision read
	// after seeing that bounds every earlier term's token in the same way.
	r := o.rev
	if o.never {
		r = 0
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RenewInterval)
	var rev uint64
	var err error
	if e.acquireOp(ctx) {
		c.Token = r + 1
		if r == 0 {
			var last uint64
			if last, err = e.claims.LastRevision(ctx); err == nil {
				e.noteRevision(last)
				c.Token = last + 1
			}
		}
		if err == nil {
			rev, err = e.claims.Update(ctx, w.name, c.Encode(), r, e.cfg.TTL)
		}
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
		e.noteRevision(rev)
		if e.Preferred(w.name) != e.node {
			// Claimed as a fallback: once things settle, hand it to its preferred node.
			e.kickRebalance()
		}
		w.term(rev, c, sent)
	case errors.Is(err, kv.ErrConflict):
		// Written since we looked: someone else's claim, or a marker we had not seen.
		e.metrics.ClaimAttempt(w.name, false)
		if err := w.refresh(e.ctx); err != nil {
			w.wait(e.cfg.RenewInterval / 4)
		}
	default:
		// The Create may have landed even though its reply did not: the watcher will show
		// our claim, of a term that never started, and run() releases it.
		w.log().Debug("claim attempt failed; retrying", "err", err)
		w.wait(e.cfg.RenewInterval / 4)
	}
}

// clear deletes a claim at the revision seen: a dead foreign claim (stale), which our own
// clock has timed out, or our own leftover, whose worker has stopped and which we release.
// Compare-and-set makes it a no-op if anything was written since.
func (w *worker) clear(o observation, stale bool) {
	e := w.e
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RenewInterval)
	var body []byte // a plain delete says nothing of the old worker
	if !stale {
		body = releaseRecord(o.claim)
	}
	mrev, err := e.claims.Release(ctx, w.name, o.rev, body)
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
		w.observe(observation{known: true, rev: mrev, cleared: stale, released: !stale})
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
	token := c.Token
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
	// A lost term fences now: the deadline is pulled in, so a supervised command is killed
	// FenceGrace from now, not FenceGrace after the last renewal's deadline.
	lost := func() {
		lease.fence(clock.Now())
		cancel(ErrLeaseLost)
	}

	lease.e, lease.ctx = e, ctx
	unserve := w.serve(ctx, lease)
	defer unserve()
	runDone := make(chan struct{})
	// The worker function is not one of the engine's goroutines: Close must not wait for
	// it forever. The live term stands for it until it returns.
	lt := e.termStarted(w.name, c.Term, token)
	go func() {
		defer e.termEnded(lt)
		defer close(runDone)
		w.runWorker(ctx, lease)
	}()

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
			// The claim is never deleted while the worker may still run: it expires. The
			// node claims the name again only once the worker has stopped.
			lease.fence(clock.Now())
			w.log().Error("worker did not stop within ShutdownGrace; leaving its claim to expire", "grace", e.cfg.ShutdownGrace, "token", token)
			return
		case <-e.stopCtx.Done():
			lease.fence(clock.Now())
			w.log().Error("engine closing: worker did not stop in time; leaving its claim to expire", "token", token)
			return
		case <-runDone:
			runDone = nil
			if stopping {
				if handoff == "" {
					w.release(rev, c, "stop")
					return
				}
				e.metrics.Handoff(w.name)
				e.publish(Event{Kind: KindWorker, Type: EventMoved, Name: w.name, Token: token, Reason: handoff,
					From: e.node, To: e.Preferred(w.name)})
				w.mu.Lock()
				w.holdUntil = clock.Now().Add(e.cfg.ClaimGrace + e.cfg.RenewInterval)
				w.mu.Unlock()
				w.release(rev, c, handoff)
				return
			}
			if ctx.Err() != nil {
				w.endTerm(ctx, rev, c, nil)
				return
			}
			// The function finished and its policy says not to run it again: keep the claim.
		case <-w.notify:
			o := w.snapshot()
			if o.rev > rev && !(o.present && o.malformed == nil && o.claim.Term == c.Term) {
				lost()
			}
		case <-ended:
			w.endTerm(ctx, rev, c, runDone)
			return
		case <-renew.C():
			if f := e.testBeforeRenew; f != nil {
				f(w.name)
			}
			next, nrev, err := w.renew(rev, c, lease, stopping)
			if errors.Is(err, kv.ErrConflict) && !unacked.IsZero() {
				// An earlier attempt whose reply was lost may have landed: then the claim is
				// still ours, renewed no earlier than that attempt was sent.
				if landed, ok := w.ownLanded(c.Term); ok {
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
				lost()
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

// ownLanded reads the claim from the stream leader and reports its revision if it is still
// this term's.
func (w *worker) ownLanded(term string) (uint64, bool) {
	e := w.e
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RenewInterval)
	defer cancel()
	ce, err := e.claims.GetClaim(ctx, w.name)
	if err != nil || ce.Err != nil || ce.Claim.Term != term {
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
func (w *worker) endTerm(ctx context.Context, rev uint64, c kv.Claim, runDone <-chan struct{}) {
	e := w.e
	token := c.Token
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
			w.log().Error("worker did not return within FenceGrace after losing its lease; another node may start it; this node will not until it returns",
				"grace", e.cfg.FenceGrace, "token", token)
		}
	}
	e.publish(Event{Kind: KindWorker, Type: EventLost, Name: w.name, Token: token, Reason: reason})
	if reason == "deadline" {
		// Our last claim may still stand; run() releases it once the store answers and
		// the worker has stopped.
		w.observe(observation{known: true, present: true, rev: rev, claim: c})
	} else if err := w.refresh(e.ctx); err != nil {
		w.observe(observation{known: true, present: true, rev: rev + 1})
	}
}

// release deletes our claim after a planned stop, with a fresh bounded context: the engine
// may be shutting down.
func (w *worker) release(rev uint64, c kv.Claim, reason string) {
	e := w.e
	token := c.Token
	// stopCtx, not the engine's context: it ends only at Close's hard deadline.
	ctx, cancel := context.WithTimeout(e.stopCtx, e.cfg.ShutdownGrace)
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
		_, err := e.claims.Release(actx, w.name, rev, releaseRecord(c))
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
			case gerr == nil && ce.Err == nil && ce.Claim.Term == c.Term:
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

// releaseRecord is the body of the delete marker that releases c: it tells contenders
// that the term's worker has stopped, so they need not wait for the lease to run out.
func releaseRecord(c kv.Claim) []byte {
	c.State = kv.StateReleased
	c.Renewed = time.Now().UTC()
	return c.Encode()
}
