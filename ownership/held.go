package ownership

import (
	"context"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jetcoord/coordinator/kv"
)

// heldTerm is one ownership term of a worker on this node, from its won claim to its end.
// It has no goroutine of its own: a held worker costs one goroutine, its function's. The
// events of a term call into it — a stop or a handoff asked, the claim overwritten, the
// node lease fenced, the function returned, the stop's grace or the engine's hard deadline
// passed, the claim's refresh due — and its state, guarded by the worker's mu, says what
// to do next. What takes time (a refresh write, a release, the wait for a fenced worker)
// runs on a short-lived goroutine, one step at a time (busy); the step that ends the term
// starts the worker's contend loop again.
//
// The term holds a slot of the engine's WaitGroup from begin to finish, so that Close
// waits for it and every goroutine it starts.
type heldTerm struct {
	w      *worker
	rev    uint64    // the claim's revision: written by the step that holds busy
	c      *kv.Claim // shared with the worker's observation: never modified
	l      Lease     // the lease the worker function gets (lease())
	cancel context.CancelCauseFunc
	lt     liveTerm // in the engine's live terms while the function runs
	// Set up by begin before any step runs; stopped by finish.
	unserve func()
	// refreshAt is when the claim is next written again, as the engine's refresh scan
	// reads it: since the engine started (refreshClock).
	refreshAt atomic.Int64

	// Guarded by w.mu.
	// stop is the stop or handoff under way, if one began (stopping): the term ends when
	// the function returns. Made then: most terms never stop.
	stop       *termStop
	runDone    bool // the worker function returned
	ended      bool // the term's context ended, not by a stop: lost or past its deadline
	graceOver  bool // ShutdownGrace passed since the stop began
	closing    bool // the engine's hard deadline (stopCtx) passed
	refreshDue bool // the claim is to be written again
	busy       bool // a step runs (or begin has not finished)
	over       bool // the step that ends the term runs: later events change nothing
}

// stopping reports whether a stop or a handoff began; w.mu is held.
func (t *heldTerm) stopping() bool { return t.stop != nil }

// termStop is a stop or a handoff of a term under way.
type termStop struct {
	handoff string // the reason of a handoff ("" for a stop)
	timer   Timer  // ShutdownGrace, while the function runs
}

// termStep is what a term does next, outside the lock.
type termStep uint8

const (
	stepNone termStep = iota
	stepRefresh
	stepStopped      // the function returned after a stop: release the claim
	stepAbandonGrace // the function did not return within ShutdownGrace
	stepAbandonClose // Close's hard deadline passed
	stepEnd          // the term was lost or its deadline passed
)

// nextLocked says which step the term takes next, and marks it taken; w.mu is held.
func (t *heldTerm) nextLocked() termStep {
	if t.busy || t.over {
		return stepNone
	}
	var s termStep
	switch {
	case t.stopping() && t.runDone:
		s = stepStopped
	case t.closing:
		s = stepAbandonClose
	case t.graceOver:
		s = stepAbandonGrace
	case t.ended && !t.stopping():
		s = stepEnd
	case t.refreshDue:
		t.refreshDue = false
		t.busy = true
		return stepRefresh
	default:
		return stepNone
	}
	t.busy, t.over = true, true
	return s
}

// dispatch runs step s, if any, on a goroutine of the engine's. The term's slot keeps the
// WaitGroup above zero: a step is only ever taken before the term is over.
func (t *heldTerm) dispatch(s termStep) {
	if s != stepNone {
		t.w.e.goFunc(func() { t.run(s) })
	}
}

// run takes step s and those that became due meanwhile.
func (t *heldTerm) run(s termStep) {
	w := t.w
	for {
		switch s {
		case stepRefresh:
			rev, ok := w.refreshDue(t)
			w.mu.Lock()
			t.rev = rev
			if !ok {
				t.lostLocked()
			}
		case stepStopped:
			w.stopped_(t.rev, t.c, t.stop.handoff)
			t.finish()
			return
		case stepAbandonGrace:
			// The claim is never deleted while the worker may still run: it expires. The
			// node claims the name again only once the worker has stopped.
			w.abandon(t.lease(), true, "worker did not stop within ShutdownGrace; leaving its claim to expire")
			t.finish()
			return
		case stepAbandonClose:
			w.abandon(t.lease(), false, "engine closing: worker did not stop in time; leaving its claim to expire")
			t.finish()
			return
		case stepEnd:
			w.mu.Lock()
			var runDone <-chan struct{}
			if !t.runDone {
				runDone = t.w.e.doneC(&t.lt)
			}
			w.mu.Unlock()
			w.endTerm(t.l.ctx, t.rev, t.c, runDone)
			t.finish()
			return
		default:
			return
		}
		t.busy = false
		s = t.nextLocked()
		w.mu.Unlock()
	}
}

// refreshEvery is when the claim is next written again: it needs no renewal, but is
// written at about half its server TTL, a backstop, at a random point so that a node's
// claims do not come due together.
func (t *heldTerm) refreshEvery() time.Duration {
	ttl := t.w.e.cfg.ClaimTTL
	return ttl/2 - time.Duration(rand.Int64N(int64(ttl/10)))
}

// refreshIn has the engine's refresh scan write the claim again d from now.
func (t *heldTerm) refreshIn(d time.Duration) {
	t.refreshAt.Store(int64(t.w.e.refreshClock() + d))
}

// refreshClock is the time the refresh scan goes by: since the engine started.
func (e *Engine) refreshClock() time.Duration { return e.cfg.Clock.Now().Sub(e.startedAt) }

// refreshScanEvery is how often the refresh scan looks for claims due (a claim is written
// again at 40 to 50 % of ClaimTTL: the scan makes that at most 2.5 % later).
func (e *Engine) refreshScanEvery() time.Duration { return e.cfg.ClaimTTL / 40 }

// refreshClaims writes the claims of held terms again when due: one scan for all of them
// (a timer per term would cost memory on every held worker for a write every ~12 h).
func (e *Engine) refreshClaims() {
	every := e.refreshScanEvery()
	t := e.cfg.Clock.NewTimer(every)
	defer t.Stop()
	var due []*heldTerm
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C():
		}
		now := e.refreshClock()
		due = due[:0]
		e.nl.mu.Lock()
		for h := range e.nl.terms {
			if time.Duration(h.refreshAt.Load()) <= now {
				h.refreshAt.Store(math.MaxInt64) // the refresh step sets the next
				due = append(due, h)
			}
		}
		e.nl.mu.Unlock()
		for _, h := range due {
			h.refreshTimer()
		}
		clear(due)
		t.Reset(every)
	}
}

// event applies f to the term's state and takes the step that became due.
func (t *heldTerm) event(f func(*heldTerm)) {
	t.w.mu.Lock()
	f(t)
	s := t.nextLocked()
	t.w.mu.Unlock()
	t.dispatch(s)
}

// lostLocked fences a lost term now: the deadline is pulled in, so a supervised command is
// killed FenceGrace from now, not FenceGrace after the last renewal's deadline. w.mu is
// held.
func (t *heldTerm) lostLocked() {
	t.lease().fence(t.w.e.cfg.Clock.Now())
	t.cancel(ErrLeaseLost)
	t.ended = true
}

// fenced is called by the node lease (its mu held) when it ended the term's context.
func (t *heldTerm) fenced(cause error) {
	t.cancel(cause)
	t.event(func(t *heldTerm) { t.ended = true })
}

// beginStopLocked begins a stop (handoff "") or a handoff: the worker's context ends, and
// the term ends when the function returned, or after ShutdownGrace. w.mu is held.
func (t *heldTerm) beginStopLocked(handoff string) {
	if t.stopping() || t.over {
		return
	}
	t.stop = &termStop{handoff: handoff}
	t.cancel(ErrStopping)
	if !t.runDone {
		t.stop.timer = t.w.e.cfg.Clock.AfterFunc(t.w.e.cfg.ShutdownGrace, t.stopGraceOver)
	}
}

func (t *heldTerm) stopGraceOver() { t.event(func(t *heldTerm) { t.graceOver = true }) }
func (t *heldTerm) refreshTimer()  { t.event(func(t *heldTerm) { t.refreshDue = true }) }
func (t *heldTerm) engineClosing() { t.event(func(t *heldTerm) { t.closing = true }) }

// runFunction runs the worker function (the goroutine a held worker costs) and tells the
// term when it returned.
func (t *heldTerm) runFunction() {
	t.w.runWorker(t.l.ctx, t.lease())
	t.w.e.termEnded(&t.lt)
	t.event(func(t *heldTerm) { t.runDone = true })
}

// begin starts the term of a won claim at rev. It returns false, starting nothing, when the
// node lease was not live: the claim is given back and the caller contends again.
// Otherwise the term runs on without this goroutine and starts the contend loop again when
// it ends.
//
//go:noinline
func (w *worker) begin(rev uint64, c *kv.Claim) bool {
	e := w.e
	token := c.Token
	t := &heldTerm{w: w, rev: rev, c: c, busy: true} // busy until set up
	t.refreshIn(t.refreshEvery())                    // before the refresh scan can see it
	t.l.worker, t.l.node, t.l.token = w.name, e.node, token
	ctx, cancel := context.WithCancelCause(context.Background())
	t.cancel = cancel
	t.l.e, t.l.ctx = e, ctx
	// The term hangs off the node lease: its deadline is the node lease's, and the node
	// lease's own timer — not a step of any loop, which may be stuck (paused process,
	// blocked call) — ends the worker's context when it passes.
	if !e.bindTerm(t) {
		cancel(nil)
		w.unbound(rev, c)
		return false
	}
	e.wg.Add(1) // the term's slot, given back by finish
	w.mu.Lock()
	w.t = t
	w.owns = true
	w.obs.shareTermClaim(c) // the watch may have shown our claim first
	handoff := w.takeHandoffLocked()
	w.mu.Unlock()
	e.metrics.Owned(1)
	w.begun(token)
	t.unserve = w.serve(ctx, t.lease())
	// The worker function is not one of the engine's goroutines: Close must not wait for
	// it forever. The live term stands for it until it returns.
	e.termStarted(t)
	w.startedRun(t.lease()) // here, not on the function's goroutine: see runWorker
	go t.runFunction()
	t.event(func(t *heldTerm) {
		t.busy = false
		// A stop or a handoff asked before the term could hear it.
		switch {
		case w.stopped():
			t.beginStopLocked("")
		case handoff != "":
			t.beginStopLocked(handoff)
		}
		if e.stopCtx.Err() != nil {
			t.closing = true
		}
	})
	if handoff != "" {
		w.log().Debug("handing over", "reason", handoff)
	}
	return true
}

// lease is the term's lease, the one its worker function gets.
func (t *heldTerm) lease() *Lease { return &t.l }

// finish ends the term: it stops its timers, unbinds it and starts the contend loop again.
func (t *heldTerm) finish() {
	w, e := t.w, t.w.e
	if t.stop != nil && t.stop.timer != nil {
		t.stop.timer.Stop()
	}
	t.unserve()
	w.mu.Lock()
	w.t = nil
	w.owns = false
	w.ended++
	w.mu.Unlock()
	e.metrics.Owned(-1)
	e.unbindTerm(t)
	t.cancel(nil)
	e.goFunc(w.run)
	e.wg.Done()
}

// closeTerms runs when stopCtx ends (Close's hard deadline, or GiveUpReleases): every held
// term gives up its stop and leaves its claim to expire.
func (e *Engine) closeTerms() {
	e.nl.mu.Lock()
	ts := make([]*heldTerm, 0, len(e.nl.terms))
	for t := range e.nl.terms {
		ts = append(ts, t)
	}
	e.nl.mu.Unlock()
	for _, t := range ts {
		t.engineClosing()
	}
}
