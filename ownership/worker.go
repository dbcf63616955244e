package ownership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nuid"

	"github.com/jetcoord/coordinator/kv"
)

// observation is what this node last saw of a worker's claim.
type observation struct {
	known   bool
	present bool   // a live claim exists
	rev     uint64 // revision of the entry or marker seen
	// c is the live claim seen (present), nil otherwise. Claims are shared, never modified
	// once observed: a held worker's observation and its term keep the same one.
	c         *kv.Claim
	malformed error
	expired   bool   // the last change was an expiry marker or a purge
	released  bool   // the last change was the owner's release: its worker stopped
	cleared   bool   // this node just cleared a claim that ran out on its own clock
	successor string // the node a release names to claim the worker at once
	releaser  string // the node whose release it was (with a successor: a planned move)
	// never: nothing is kept for the key — never claimed, or so long ago that its markers
	// have gone — so no worker of it can still run.
	never bool
	// unseen: never, as the first watch delivery says; ignored once anything was observed.
	unseen bool
	// decoded: c was just decoded from the store, not yet shared: observe interns it.
	decoded bool
	// seenAt is the local (monotonic) time this revision was first seen. For a claim that
	// went away without a release (deleted or purged by anyone, expired on the server's
	// clock) it stays the time the first such marker was seen (for a claim of an older
	// version, not bound to a node lease, the time its last revision was seen).
	seenAt time.Time
	// last is, for a claim that went away without a release, the last live claim seen
	// before it: the node lease it was bound to, and whether it was ours. Never modified;
	// nil mostly (a pointer: every registered worker keeps an observation).
	last *kv.Claim
}

// claim returns the live claim seen, or the zero claim (present but not read: an
// observation made after a write whose answer did not come).
func (o *observation) claim() *kv.Claim {
	if o.c == nil {
		return &kv.Claim{}
	}
	return o.c
}

// shareTermClaim makes o keep tc, a held term's claim, when the claim o saw is a record of
// that term (written again only to renew it): one copy, not two. It reports whether it did.
func (o *observation) shareTermClaim(tc *kv.Claim) bool {
	c := o.c
	switch {
	case c == tc:
		return true
	case c == nil || o.malformed != nil || c.Term != tc.Term || c.Node != tc.Node || c.Incarnation != tc.Incarnation:
		return false
	}
	o.c = tc
	return true
}

// lastClaim returns o.last, or the zero claim.
func (o *observation) lastClaim() kv.Claim {
	if o.last == nil {
		return kv.Claim{}
	}
	return *o.last
}

// bound reports whether c is bound to a node lease (not a claim of an older version).
func bound(c kv.Claim) bool { return c.Lease != "" && c.Incarnation != "" }

// observationOf turns a change of the claims bucket into an observation.
func observationOf(c kv.Change) observation {
	o := observation{known: true, rev: c.Revision, present: c.Op == kv.OpPut, expired: c.Op == kv.OpExpire}
	switch c.Op {
	case kv.OpPut:
		var cl kv.Claim
		cl, o.malformed = kv.DecodeClaim(c.Key, c.Value)
		cl.Meta = nil // not needed here, and a map per worker held in memory
		o.c, o.decoded = &cl, true
	case kv.OpDelete:
		var rc kv.Claim
		rc, o.released = kv.DecodeRelease(c.Key, c.Value)
		o.successor = rc.Successor
		if o.successor != "" {
			o.releaser = rc.Node
		}
	}
	return o
}

// worker is the state machine of one registered name on this node. While it holds no
// term, one goroutine (run) contends for it; a held term (held.go) is driven by its events.
// The watcher feeds it observations through observe.
type worker struct {
	e    *Engine
	name string
	fn   WorkerFunc
	opts workerOptions

	// notify wakes the contend loop: a new observation arrived, or a stop (capacity 1).
	// Made by run while it runs, nil while a term is held; guarded by mu, read by run's
	// goroutine without it (only run writes it).
	notify   chan struct{}
	stopFlag atomic.Bool // set by requestStop

	mu    sync.Mutex
	obs   observation
	owns  bool
	t     *heldTerm   // the term held, if any
	ended uint64      // terms ended so far (Release waits for the next)
	rare  *workerRare // made on first use: most workers never need it
	done  lazyDone    // run returned for good (stopped)

	pause time.Duration // the wait the contend step under way asks for (run's only)
	op    bool          // run holds a slot for a claim (e.ops) for the next step
}

// workerRare is what few workers ever need, apart: a worker is kept for every name
// registered.
type workerRare struct {
	holdUntil time.Time // after a handoff, leave the worker to others until then
	// handoffReq is a handoff asked while no term could hear it: the next term hands over.
	handoffReq string
	waitingFor string // the live term this registration waits for (logged once)
}

// rareLocked returns w.rare, making it; w.mu is held.
func (w *worker) rareLocked() *workerRare {
	if w.rare == nil {
		w.rare = &workerRare{}
	}
	return w.rare
}

// takeHandoffLocked returns and clears the handoff asked while no term could hear it; w.mu
// is held.
func (w *worker) takeHandoffLocked() string {
	if w.rare == nil {
		return ""
	}
	h := w.rare.handoffReq
	w.rare.handoffReq = ""
	return h
}

func newWorker(e *Engine, name string, fn WorkerFunc, o workerOptions) *worker {
	return &worker{e: e, name: name, fn: fn, opts: o}
}

// doneC returns a channel closed when the worker's loop has returned for good.
func (w *worker) doneC() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done.wait()
}

// exit marks the worker's loop as returned for good.
func (w *worker) exit() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done.close()
}

// requestStop stops the worker: its held term, if any, and its contend loop.
func (w *worker) requestStop() {
	w.stopFlag.Store(true)
	w.poke() // wakes the contend loop, which looks at stopFlag
	w.mu.Lock()
	t := w.t
	var s termStep
	if t != nil {
		t.beginStopLocked("")
		s = t.nextLocked()
	}
	w.mu.Unlock()
	if t != nil {
		t.dispatch(s)
	}
}

func (w *worker) stopped() bool { return w.stopFlag.Load() }

func (w *worker) owning() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.owns
}

func (w *worker) termsEnded() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ended
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
		// Gone without its owner's word. A delete, a purge or an expiry marker skips no
		// timer: a claim bound to a node lease is dead once that lease is (or its owner
		// releases it); one of an older version, renewed on its own, a TTL after the last
		// write we saw; one we never saw, a TTL after the first marker.
		switch {
		case w.obs.present && w.obs.malformed == nil:
			last := w.obs.claim() // a zero claim when none was read (present, unread)
			o.last = last
			if !bound(*last) {
				o.seenAt = w.obs.seenAt
			}
		case !w.obs.present:
			o.last = w.obs.last
			o.seenAt = w.obs.seenAt
		}
	}
	if o.decoded {
		w.intern(&o)
	}
	w.obs = o
	s := stepNone
	t := w.t
	if t != nil && !t.over && w.overwritten(t.rev, t.c.Term) {
		t.lostLocked()
		s = t.nextLocked()
	}
	w.mu.Unlock()
	if t != nil {
		t.dispatch(s)
	}
	w.poke()
}

// intern makes a decoded claim share what this node already keeps (it is most often our
// own claim, decoded from the watch): the held term's claim itself when it is that term's,
// else the strings. A worker keeps its observation for as long as it is registered. w.mu
// is held.
func (w *worker) intern(o *observation) {
	o.decoded = false
	c := o.c
	if c == nil || o.malformed != nil {
		return
	}
	if t := w.t; t != nil && o.shareTermClaim(t.c) {
		return
	}
	e := w.e
	if c.Worker == w.name {
		c.Worker = w.name
	}
	if c.Node == e.node {
		c.Node = e.node
	}
	if c.Incarnation == e.incarnation {
		c.Incarnation = e.incarnation
	}
	if c.Lease == e.lease {
		c.Lease = e.lease
	}
	if c.State == kv.StateRunning {
		c.State = kv.StateRunning
	}
}

// poke wakes the worker's loop to look at its state again, if it runs: one that starts
// looks anyway.
func (w *worker) poke() {
	w.mu.Lock()
	c := w.notify
	w.mu.Unlock()
	select {
	case c <- struct{}{}: // a nil c (no loop runs) is never ready
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

// wait makes the contend loop wait for d, a new observation or a stop once the step under
// way returned (run parks it, in a small frame); it reports true.
func (w *worker) wait(d time.Duration) bool {
	w.pause = d
	return true
}

// What a step of the contend loop asks of run, besides a wait (a positive duration).
const (
	waitSynced time.Duration = -1 // wait until the first watch delivered every claim
	termBegan  time.Duration = -2 // a claim was won and its term began
	stopNow    time.Duration = -3 // the worker was stopped
	waitOp     time.Duration = -4 // wait for a slot for a claim (takeOp)
	readClaim  time.Duration = -5 // read the claim: no observation of it yet
)

// takeOp takes a slot for a claim (e.ops): the one run waited for, or a free one. When
// none is free it asks run to wait for one — in its small frame, not in the step's: with
// 10,000 workers claiming at once, most wait here.
func (w *worker) takeOp() bool {
	if w.op {
		w.op = false
		return true
	}
	select {
	case w.e.ops <- struct{}{}:
		return true
	default:
		w.pause = waitOp
		return false
	}
}

// awaitOp waits for a slot for a claim, which the next step takes; it reports false on a
// stop.
func (w *worker) awaitOp() bool {
	for {
		select {
		case w.e.ops <- struct{}{}:
			w.op = true
			return true
		case <-w.notify:
			if w.stopped() {
				return false
			}
		case <-w.e.ctx.Done():
			return w.park(w.e.cfg.RenewInterval / 4)
		}
	}
}

// readClaim reads the claim for a worker the watch has not shown, with the slot for a
// store operation contend took; it reports false on a stop.
//
//go:noinline
func (w *worker) readClaim() bool {
	err := w.refresh(w.e.ctx)
	w.e.releaseOp()
	if err != nil {
		w.log().Debug("cannot read claim; retrying", "err", err)
		return w.park(w.e.cfg.RenewInterval / 4)
	}
	return true
}

// park waits as a step of the contend loop asked (d > 0, or waitSynced); it reports false on
// a stop.
func (w *worker) park(d time.Duration) bool {
	if d == waitSynced {
		select {
		case <-w.e.synced:
		case <-w.notify:
		}
		return !w.stopped()
	}
	t := w.e.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.notify:
	case <-t.C():
	}
	return !w.stopped()
}

// run contends for the worker until it is stopped or wins a claim. A won claim's term runs
// on without this goroutine (held.go), and starts run again on a fresh one when it ends.
//
// Each step of the loop (contend) runs in a frame of its own, which its store calls grow;
// run waits between steps in a small frame. A contending goroutine is parked most of the
// time, and the average parked stack sets the size every new goroutine starts with (the
// runtime's adaptive stack start), a held worker's among them: with 100,000 workers,
// stacks are a good part of the process's memory.
func (w *worker) run() {
	notify := make(chan struct{}, 1)
	w.mu.Lock()
	w.notify = notify
	w.mu.Unlock()
	// Not deferred: a panic in a step must not wait for w.mu, which the step may hold.
	done := func() {
		w.mu.Lock()
		if w.notify == notify { // else a later run (of the term this one began) made its own
			w.notify = nil
		}
		w.mu.Unlock()
	}
	for {
		d := w.contend()
		if w.op { // waited for, not used: the step found something else to do
			w.op = false
			w.e.releaseOp()
		}
		switch {
		case d == termBegan:
			done()
			return
		case d == stopNow:
		case d == 0:
			continue
		case d == waitOp:
			if w.awaitOp() {
				continue
			}
		case d == readClaim:
			if w.readClaim() {
				continue
			}
		case w.park(d):
			continue
		}
		done()
		w.exit()
		return
	}
}

// contend takes one step of the worker's loop: it returns how long to wait before the
// next (0: none), termBegan when it won a claim and began its term, stopNow when stopped.
//
//go:noinline
func (w *worker) contend() time.Duration {
	e := w.e
	w.pause = 0
	if w.stopped() {
		return stopNow
	}
	o := w.snapshot()
	if !o.known {
		select {
		case <-e.synced:
		default:
			// The first watch delivers every claim: wait for it rather than read each.
			return waitSynced
		}
		// In run's small frame: at a late Register, every worker reads, at most
		// maxBurstOps at a time (a slot is taken here and given back by readClaim).
		if !w.takeOp() {
			return w.pause
		}
		return readClaim
	}
	if hold := w.holdOff(); hold > 0 {
		// A leftover claim of ours whose worker has stopped is released even now: it
		// would not expire while our node lease lives.
		if own, mine := w.leftover(o); mine && e.termRunning(w.name) == nil {
			w.clear(own)
			return w.pause
		}
		w.wait(hold)
		return w.pause
	}
	takeover := false
	switch {
	case !o.present:
		if t := e.termRunning(w.name); t != nil {
			// An earlier term of this name on this node may still run: its command
			// not reaped, its function not returned. Its end pokes us.
			w.waitTerm(t)
			w.wait(e.cfg.TTL)
			return w.pause
		}
		if !o.released && !o.cleared && !o.never {
			if own, mine := w.leftover(o); mine {
				// Our claim, deleted or expired while its term ran (which ended at
				// once); the worker has stopped: say so, so that no one waits for
				// our node lease to end.
				w.clear(own)
				return w.pause
			}
			// Deleted, purged or expired without the owner's word: take over only
			// when our own clock says the owner's lease has run out.
			if !w.dead(o.lastClaim(), o.seenAt) || !w.paceTakeover() {
				return w.pause
			}
			takeover = true
		} else if left := e.claimDelay(w.name, o) - e.cfg.Clock.Now().Sub(o.seenAt); left > 0 && !o.cleared {
			// Released, or never claimed: the successor the release names or the
			// preferred node claims at once, the others after the claim grace. A
			// lease that ran out goes to the preferred node first (a dead owner is
			// out of placement once its record went stale).
			w.wait(left)
			return w.pause
		}
		if rev, c, ok := w.claim(o); ok && w.begin(rev, c) {
			return termBegan
		}
		if takeover && w.pause == waitOp {
			e.takeover.giveBack() // not used: the next step reserves one again
		}
	case o.malformed == nil && o.claim().Node == e.node && o.claim().Incarnation == e.incarnation:
		if t := e.liveTerm(w.name, o.claim().Term); t != nil {
			// Our claim, and its worker may still run: never clear it. It is left to
			// expire, or released once the worker stops.
			w.waitTerm(t)
			w.wait(e.cfg.TTL)
			return w.pause
		}
		// Our own claim from a term whose worker has stopped (fenced, a stop that
		// outran ShutdownGrace, or a claim whose reply was lost): clearing it is a
		// release.
		w.clear(o)
	default:
		// Someone else's claim: it is dead once the node lease it is bound to is
		// (a claim of an older version or not valid: once TTL passes with no newer
		// revision). Then it is overwritten by compare-and-set: one write.
		var c kv.Claim
		if o.malformed == nil {
			c = *o.claim()
		}
		if !w.dead(c, o.seenAt) || !w.paceTakeover() {
			return w.pause
		}
		if rev, c, ok := w.claim(o); ok && w.begin(rev, c) {
			return termBegan
		}
		if w.pause == waitOp {
			e.takeover.giveBack() // not used: the next step reserves one again
		}
	}
	return w.pause
}

// leftover returns, as an observation to release, our own claim of a term that no longer
// runs — present, or deleted or expired under it without our word.
func (w *worker) leftover(o observation) (observation, bool) {
	e := w.e
	switch {
	case o.present && o.malformed == nil && o.claim().Node == e.node && o.claim().Incarnation == e.incarnation:
		return o, e.liveTerm(w.name, o.claim().Term) == nil
	case !o.present && !o.released && !o.cleared && !o.never &&
		o.last != nil && o.last.Node == e.node && o.last.Incarnation == e.incarnation && o.last.Term != "":
		return observation{known: true, rev: o.rev, c: o.last}, e.liveTerm(w.name, o.last.Term) == nil
	}
	return observation{}, false
}

// dead waits until the owner of c, last seen at seenAt (for a claim gone without its
// owner's word: its first marker), cannot run the worker any more, by this node's clock:
// the node lease c is bound to went a TTL without a revision we saw, as the stream leader
// confirms, or, for a claim of an older version (or none known), the claim did. Then the
// preferred node may take it over at once, the others after the claim grace. It reports
// false when it waited instead (the caller looks again) or was stopped.
func (w *worker) dead(c kv.Claim, seenAt time.Time) bool {
	e := w.e
	start := seenAt
	if bound(c) {
		if from, ok := e.leaseDeadFrom(c.Node, c.Incarnation); ok && from.After(start) {
			start = from
		}
	}
	expiry := start.Add(e.cfg.TTL)
	now := e.cfg.Clock.Now()
	if left := expiry.Sub(now); left > 0 {
		w.wait(left)
		return false
	}
	if left := e.takeoverDelay(w.name) - now.Sub(expiry); left > 0 {
		// Spread a dead node's workers: each survivor takes its preferred ones at once.
		w.wait(left)
		return false
	}
	if bound(c) && !e.confirmLeaseDead(c.Node, c.Incarnation, seenAt) {
		// Not proven dead yet: a revision the watch had not shown, or another node
		// writing the proof. Look again shortly.
		w.wait(e.cfg.RenewInterval / 4)
		return false
	}
	return true
}

// paceTakeover holds a takeover to the node's takeover rate; it reports false when the
// worker was stopped meanwhile.
func (w *worker) paceTakeover() bool {
	e := w.e
	d := e.takeover.reserve(e.cfg.Clock.Now())
	if d <= 0 {
		return true
	}
	t := e.cfg.Clock.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-w.notify: // the step after this one looks at the observation anyway
			if w.stopped() {
				e.takeover.giveBack()
				return false
			}
		case <-t.C():
			return true
		}
	}
}

// waitTerm logs, once per term, that this registration waits for an earlier term.
func (w *worker) waitTerm(t *liveTerm) {
	w.mu.Lock()
	r := w.rareLocked()
	first := r.waitingFor != t.id()
	r.waitingFor = t.id()
	w.mu.Unlock()
	if first {
		w.log().Warn("an earlier term of this worker still runs on this node; not claiming it until that worker stops",
			"token", t.token(), "running_for", w.e.cfg.Clock.Now().Sub(t.since).Round(time.Millisecond))
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
	if w.rare == nil {
		return 0
	}
	return w.rare.holdUntil.Sub(e.cfg.Clock.Now())
}

// requestHandoff asks the held term to hand the worker over; asked while no term can hear
// it, the next term does.
func (w *worker) requestHandoff(reason string) {
	w.mu.Lock()
	t := w.t
	s, began := stepNone, false
	switch {
	case t == nil || t.over:
		t = nil
		if r := w.rareLocked(); r.handoffReq == "" {
			r.handoffReq = reason
		}
	case !t.stopping():
		t.beginStopLocked(reason)
		s, began = t.nextLocked(), true
	}
	w.mu.Unlock()
	if began {
		w.log().Debug("handing over", "reason", reason)
	}
	if t != nil {
		t.dispatch(s)
	}
}

// claim tries to create the claim and reports whether it landed: then its term is to be
// run, at the revision returned.
func (w *worker) claim(o observation) (uint64, *kv.Claim, bool) {
	e := w.e
	if e.termRunning(w.name) != nil {
		return 0, nil, false // run() waits for it
	}
	if _, live := e.nodeLeaseLive(); !live {
		// Claims are bound to the node lease: none while it is not live.
		w.wait(e.cfg.RenewInterval / 4)
		return 0, nil, false
	}
	sent := e.cfg.Clock.Now()
	c := kv.Claim{Worker: w.name, Node: e.node, Incarnation: e.incarnation, Term: nuid.Next(), Lease: e.lease,
		Acquired: sent.UTC(), Renewed: sent.UTC(), TTL: kv.Duration(e.cfg.TTL), State: kv.StateRunning,
		Meta: e.claimMeta}
	if o.released && o.releaser != e.node {
		c.From = o.releaser // a planned move: placement keeps it off that node
	}
	// Compare-and-set on the key's last change seen (r; 0 when nothing is kept for it), a
	// dead claim included, which is overwritten:
	// every earlier term's token is at most its first record's revision, which is at most
	// r, and this record lands above r. With nothing kept, the bucket's last revision read
	// after seeing that bounds every earlier term's token in the same way.
	r := o.rev
	if o.never {
		r = 0
	}
	if !w.takeOp() {
		return 0, nil, false // run waits for a slot, and the next step looks again
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RenewInterval)
	var rev uint64
	var err error
	c.Token = r + 1
	if r == 0 {
		var last uint64
		if last, err = e.claims.LastRevision(ctx); err == nil {
			e.noteRevision(last)
			c.Token = last + 1
		}
	}
	if err == nil {
		rev, err = e.claims.Update(ctx, w.name, c.Encode(), r, e.cfg.ClaimTTL)
	}
	e.releaseOp()
	cancel()
	switch {
	case err == nil:
		e.metrics.ClaimAttempt(w.name, true)
		switch {
		case o.present:
			from := o.claim().Node
			if o.malformed != nil {
				from = "unknown"
			}
			w.log().Info("claim not renewed within TTL; taking over", "previous", from, "revision", o.rev, "lease", o.claim().Lease)
			e.metrics.Takeover(w.name)
			e.publish(Event{Kind: KindWorker, Type: EventExpired, Name: w.name, From: from, Reason: "ttl"})
		case !o.released && !o.never && !o.cleared:
			e.metrics.Takeover(w.name)
			e.publish(Event{Kind: KindWorker, Type: EventExpired, Name: w.name, From: o.lastClaim().Node, Reason: "ttl"})
		}
		e.noteRevision(rev)
		if e.Preferred(w.name) != e.node {
			// Claimed as a fallback: once things settle, hand it to its preferred node.
			e.kickRebalance()
		}
		return rev, &c, true
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
	return 0, nil, false
}

// clear releases our own claim at the revision seen (a live claim, or the marker of one
// deleted or expired under us), once its worker has stopped: the release marker tells
// contenders they need not wait for our node lease to end. Compare-and-set makes it a
// no-op if anything was written since.
func (w *worker) clear(o observation) {
	e := w.e
	if o.rev == 0 {
		// The revision is not known (the watch started again and has not shown the key):
		// a release needs it. Read the claim; the next step clears what it finds.
		if err := w.refresh(e.ctx); err != nil {
			w.wait(e.cfg.RenewInterval / 4)
		}
		return
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RenewInterval)
	mrev, err := e.claims.Release(ctx, w.name, o.rev, releaseRecord(*o.claim()))
	cancel()
	switch {
	case err == nil:
		w.observe(observation{known: true, rev: mrev, released: true})
	case errors.Is(err, kv.ErrConflict):
		if err := w.refresh(e.ctx); err != nil {
			w.wait(e.cfg.RenewInterval / 4)
		}
	default:
		w.log().Debug("releasing claim failed; retrying", "err", err)
		w.wait(e.cfg.RenewInterval / 4)
	}
}

// unbound gives back a claim that landed while the node lease was not live. The helpers
// of term below are apart from it so that term's frame — on the stack of every held
// worker's goroutine — stays small.
//
//go:noinline
func (w *worker) unbound(rev uint64, c *kv.Claim) {
	w.log().Warn("node lease not live when the claim landed; releasing it", "token", c.Token)
	w.observe(observation{known: true, present: true, rev: rev, c: c})
}

// overwritten reports whether the claim was written since rev by another term than this
// one (term). w.mu is held.
func (w *worker) overwritten(rev uint64, term string) bool {
	o := &w.obs
	return o.rev > rev && !(o.present && o.malformed == nil && o.claim().Term == term)
}

// begun announces a term that began.
//
//go:noinline
func (w *worker) begun(token uint64) {
	w.e.publish(Event{Kind: KindWorker, Type: EventClaimed, Name: w.name, Token: token})
	w.log().Info("claimed", "token", token)
}

// abandon fences a term whose worker did not stop in time, leaving its claim to expire.
//
//go:noinline
func (w *worker) abandon(lease *Lease, grace bool, msg string) {
	e := w.e
	lease.fence(e.cfg.Clock.Now())
	if grace {
		w.log().Error(msg, "grace", e.cfg.ShutdownGrace, "token", lease.Token())
		return
	}
	w.log().Error(msg, "token", lease.Token())
}

// stopped_ ends a term whose worker stopped after a planned stop (handoff names the
// reason of a handoff, else it was a stop): it releases the claim, naming the successor.
// Apart from term, so that term's frame — on the stack of every held worker's goroutine —
// stays small.
//
//go:noinline
func (w *worker) stopped_(rev uint64, c *kv.Claim, handoff string) {
	e := w.e
	rc := *c                           // the term's claim is shared: never modified
	rc.Successor = e.successor(w.name) // claims at once when the release lands
	c = &rc
	if handoff == "" {
		w.release(rev, *c, "stop")
		return
	}
	e.metrics.Handoff(w.name)
	e.publish(Event{Kind: KindWorker, Type: EventMoved, Name: w.name, Token: c.Token, Reason: handoff,
		From: e.node, To: c.Successor})
	if c.Successor != "" { // else no other node can take it: this one may again
		w.mu.Lock()
		w.rareLocked().holdUntil = e.cfg.Clock.Now().Add(e.cfg.ClaimGrace + e.cfg.RenewInterval)
		w.mu.Unlock()
	}
	w.release(rev, *c, handoff)
}

// refreshDue writes the claim of term t again (the server TTL's backstop) and sets when
// the next is due; it returns the claim's revision, and false if the claim is no longer
// ours. Apart from term, like stopped_.
//
//go:noinline
func (w *worker) refreshDue(t *heldTerm) (uint64, bool) {
	rev, c := t.rev, t.c
	nrev, err := w.refreshClaim(rev, *c)
	switch {
	case err == nil:
		t.refreshIn(t.refreshEvery())
		return nrev, true
	case errors.Is(err, kv.ErrConflict):
		t.refreshIn(t.refreshEvery())
		// A write whose reply was lost may have landed: then the claim is still ours.
		if landed, ok := w.ownLanded(c.Term); ok {
			return landed, true
		}
		return rev, false
	default:
		w.log().Warn("claim refresh failed; retrying", "err", err)
		t.refreshIn(0) // again at the next scan
		return rev, true
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

// refreshClaim writes the claim again at rev, renewing its server TTL (the backstop).
func (w *worker) refreshClaim(rev uint64, c kv.Claim) (uint64, error) {
	e := w.e
	c.Renewed = e.cfg.Clock.Now().UTC()
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RenewInterval)
	defer cancel()
	if !e.acquireOp(ctx) {
		return 0, fmt.Errorf("%w: refreshing claim %q: %w", kv.ErrUnavailable, w.name, ctx.Err())
	}
	defer e.releaseOp()
	return e.claims.Update(ctx, w.name, c.Encode(), rev, e.cfg.ClaimTTL)
}

// endTerm handles a term that ended without a planned stop: the lease was lost or its
// deadline passed. It waits for the worker up to FenceGrace.
func (w *worker) endTerm(ctx context.Context, rev uint64, c *kv.Claim, runDone <-chan struct{}) {
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
		w.observe(observation{known: true, present: true, rev: rev, c: c})
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
		w.log().Warn("could not release claim in time; it is released later, or taken over a TTL after this node's lease ends")
		return
	}
	defer e.doneRelease()
	released := func() {
		e.publish(Event{Kind: KindWorker, Type: EventReleased, Name: w.name, Token: token, Reason: reason})
		w.log().Debug("released", "token", token) // a paced stop logs its progress
	}
	for {
		actx, acancel := context.WithTimeout(ctx, e.cfg.RenewInterval)
		mrev, err := e.claims.Release(actx, w.name, rev, releaseRecord(c))
		acancel()
		if err == nil {
			w.observe(observation{known: true, rev: mrev, released: true})
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
				// Deleted or expired under us: leave our word over the marker, so that no
				// one waits for our node lease to end.
				w.releaseOverMarker(ctx, c)
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
			w.log().Warn("could not release claim; it is released later, or taken over a TTL after this node's lease ends", "err", err)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// releaseOverMarker writes c's release record over the delete or expiry marker that
// removed it, unless a release is there already.
func (w *worker) releaseOverMarker(ctx context.Context, c kv.Claim) {
	e := w.e
	actx, cancel := context.WithTimeout(ctx, e.cfg.RenewInterval)
	defer cancel()
	m, err := e.claims.Latest(actx, w.name)
	if err != nil || m.Op == kv.OpPut {
		return
	}
	if _, ok := kv.DecodeRelease(w.name, m.Value); ok {
		return
	}
	_, _ = e.claims.Release(actx, w.name, m.Revision, releaseRecord(c))
}

// runWorker calls the worker function, again after failures as the restart policy says,
// until ctx ends. The first start was announced by begin: publishing an event (encoding it,
// writing it to the connection) would grow this goroutine's stack, which the runtime never
// shrinks back to its 2 KB start while the worker runs.
func (w *worker) runWorker(ctx context.Context, lease *Lease) {
	started := w.e.cfg.Clock.Now()
	err := w.call(ctx, lease)
	w.restart(ctx, lease, started, err)
}

// restart reports a return of the worker function (started at started) and calls it
// again as the restart policy says, until ctx ends. Apart from runWorker, so that the
// stack of every held worker's goroutine (scanned at every collection) stays small.
//
//go:noinline
func (w *worker) restart(ctx context.Context, lease *Lease, started time.Time, err error) {
	e := w.e
	backoff := e.cfg.RestartBackoff
	for first := true; ; first = false {
		if !first {
			started = e.cfg.Clock.Now()
			w.startedRun(lease)
			err = w.call(ctx, lease)
		}
		ran := e.cfg.Clock.Now().Sub(started)
		if ctx.Err() != nil {
			w.returned(ctx, lease, true, nil, 0, 0)
			return
		}
		w.returned(ctx, lease, false, err, ran, backoff)
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

// startedRun reports a start of the worker function.
//
//go:noinline
func (w *worker) startedRun(lease *Lease) {
	w.e.publish(Event{Kind: KindWorker, Type: EventStarted, Name: w.name, Token: lease.Token()})
}

// returned reports a return of the worker function (err, after running for ran; the next
// run in backoff), or the term's end (ended: ctx ended). Apart from runWorker, so that the frame
// of runWorker — on the stack of every held worker's function — stays small.
//
//go:noinline
func (w *worker) returned(ctx context.Context, lease *Lease, ended bool, err error, ran, backoff time.Duration) {
	e := w.e
	switch {
	case ended:
		e.publish(Event{Kind: KindWorker, Type: EventStopped, Name: w.name, Token: lease.Token(),
			Reason: reasonOf(context.Cause(ctx))})
	case err != nil:
		e.metrics.WorkerFailed(w.name)
		w.log().Error("worker failed", "err", err, "ran", ran.Round(time.Millisecond), "restart_in", backoff)
		e.publish(Event{Kind: KindWorker, Type: EventFailed, Name: w.name, Token: lease.Token(), Error: err.Error()})
	default:
		e.publish(Event{Kind: KindWorker, Type: EventStopped, Name: w.name, Token: lease.Token(), Reason: "returned"})
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
