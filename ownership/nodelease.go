package ownership

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/jetcoord/coordinator/kv"
)

// The node lease is this node's membership record in the nodes bucket, renewed by
// compare-and-set every RenewInterval (keepMembership). Every claim this node writes is
// bound to it (kv.Claim.Lease and Incarnation) and needs no renewal of its own: one write
// keeps all of a node's claims alive. Every term's deadline is the node lease's deadline —
// the send time of the last successful renewal plus RenewDeadline — and one engine-level
// timer fences every term when it passes; a lost node lease fences them all at once.

// nodeLease is the owner side of the node lease.
type nodeLease struct {
	mu       sync.Mutex
	deadline time.Time // zero: no lease (not written yet, or lost)
	timer    Timer
	terms    map[*heldTerm]struct{}
	// chainStart is when the current unbroken run of this node's writes of its record began
	// (the reply to the write that began it); zero while the lease is lost. chainSent is the
	// send time of the last successful write of that run. Each write is compare-and-set at
	// the one before, so no other process wrote the record in between: an earlier
	// incarnation of this node could renew nothing since chainStart (ownEarlierDead).
	chainStart time.Time
	chainSent  time.Time
}

// nodeLeaseLive reports whether the node lease is live by the local clock, and its deadline.
func (e *Engine) nodeLeaseLive() (time.Time, bool) {
	e.nl.mu.Lock()
	defer e.nl.mu.Unlock()
	d := e.nl.deadline
	return d, !d.IsZero() && e.cfg.Clock.Now().Before(d)
}

// bindTerm hangs a term off the node lease: its deadline becomes the lease's. It returns
// false, binding nothing, when the node lease is not live: the term must not start.
func (e *Engine) bindTerm(h *heldTerm) bool {
	e.nl.mu.Lock()
	defer e.nl.mu.Unlock()
	d := e.nl.deadline
	if d.IsZero() || !e.cfg.Clock.Now().Before(d) {
		return false
	}
	h.l.extend(d)
	if e.nl.terms == nil {
		e.nl.terms = map[*heldTerm]struct{}{}
	}
	e.nl.terms[h] = struct{}{}
	return true
}

func (e *Engine) unbindTerm(h *heldTerm) {
	e.nl.mu.Lock()
	defer e.nl.mu.Unlock()
	delete(e.nl.terms, h)
}

// nodeLeaseRenewed records a successful renewal of the node record sent at sent. A
// renewal that comes back after the deadline revives no term: they were fenced.
// fresh says the write began a new run of writes (a create, or a takeover of the record
// at the revision read), not a compare-and-set at this node's previous write.
func (e *Engine) nodeLeaseRenewed(sent time.Time, fresh bool) {
	clock := e.cfg.Clock
	next := sent.Add(e.cfg.RenewDeadline)
	e.nl.mu.Lock()
	defer e.nl.mu.Unlock()
	now := clock.Now()
	if fresh || e.nl.chainStart.IsZero() {
		e.nl.chainStart = now
	}
	e.nl.chainSent = sent
	if !e.nl.deadline.IsZero() && !now.Before(e.nl.deadline) {
		e.endTermsLocked(ErrLeaseExpired, now)
	}
	if !next.After(e.nl.deadline) {
		return
	}
	e.nl.deadline = next
	for h := range e.nl.terms {
		h.l.extend(next)
	}
	if e.nl.timer == nil {
		e.nl.timer = clock.AfterFunc(next.Sub(now), e.nodeLeaseCheck)
	} else {
		e.nl.timer.Reset(next.Sub(now))
	}
}

// nodeLeaseCheck runs when the deadline may have passed: it fences every term if it has.
// It does not depend on the renew loop, which may be stuck.
func (e *Engine) nodeLeaseCheck() {
	e.nl.mu.Lock()
	defer e.nl.mu.Unlock()
	if e.nl.deadline.IsZero() {
		return
	}
	now := e.cfg.Clock.Now()
	if left := e.nl.deadline.Sub(now); left > 0 {
		e.nl.timer.Reset(left)
		return
	}
	e.endTermsLocked(ErrLeaseExpired, now)
}

// nodeLeaseLost ends every term now: the node record is gone or another process wrote it.
func (e *Engine) nodeLeaseLost() {
	e.nl.mu.Lock()
	defer e.nl.mu.Unlock()
	e.nl.deadline = time.Time{}
	e.nl.chainStart = time.Time{}
	e.endTermsLocked(ErrLeaseLost, e.cfg.Clock.Now())
}

// ownEarlierDead answers, for a claim bound to an earlier incarnation of this node's own
// name (a restart), when that lease's dead timer started and whether it is proven dead
// for a claim first seen at claimSeen. The key holds this incarnation's record: other
// nodes' views of it move with every renewal of ours, so neither they nor a tombstone
// (which would end our own lease) can tell. Our own run of compare-and-set writes can: no
// renewal of the earlier incarnation landed after the run began, so its terms ended by
// chainStart + RenewDeadline (+ FenceGrace for a command) — within a TTL; and a write of
// the run sent after claimSeen shows that it did not take the record back since.
func (e *Engine) ownEarlierDead(claimSeen time.Time) (from time.Time, dead bool) {
	e.nl.mu.Lock()
	defer e.nl.mu.Unlock()
	cs := e.nl.chainStart
	if cs.IsZero() {
		return time.Time{}, false
	}
	return cs, e.nl.chainSent.After(claimSeen) && !e.cfg.Clock.Now().Before(cs.Add(e.cfg.TTL))
}

// claimsGone ends every term now, the node lease staying: the workers bucket was deleted
// (and recreated), and every claim with it.
func (e *Engine) claimsGone() {
	e.nl.mu.Lock()
	defer e.nl.mu.Unlock()
	e.endTermsLocked(ErrLeaseLost, e.cfg.Clock.Now())
}

func (e *Engine) stopNodeLease() {
	e.nl.mu.Lock()
	defer e.nl.mu.Unlock()
	if e.nl.timer != nil {
		e.nl.timer.Stop()
	}
}

// endTermsLocked fences every bound term with cause; e.nl.mu is held.
func (e *Engine) endTermsLocked(cause error, now time.Time) {
	for h := range e.nl.terms {
		h.l.fence(now)
		h.fenced(cause)
	}
}

// leaseName is what a claim names as its node lease: "<nodes bucket>/<node>".
func (e *Engine) leaseName() string { return e.store.Nodes.Name() + "/" + e.node }

// nodeView is what this node saw of another node's lease key, for contenders.
type nodeView struct {
	rev  uint64    // latest change of the key seen (0: none kept)
	inc  string    // incarnation of that change if it is a live record, else ""
	seen time.Time // local time that change was first seen
	gen  uint64    // members watch it came from; a change from a new watch may follow a gap
	// down is, per incarnation that no longer holds the record, when its dead timer
	// started: when its last live revision was first seen, or, when changes may have been
	// missed in between, when the change after it was.
	down map[string]time.Time
	// ordered marks the incarnations in down whose last record this node saw followed, in
	// the same watch, by a change of the key: that change landed after their last renewal,
	// so none of theirs can land after it — proof enough, no tombstone needed.
	ordered map[string]bool
	// proof is, per incarnation, when a tombstone that proved its lease dead was sent.
	proof map[string]time.Time
	busy  bool // a tombstone is being written
	// failed: a tombstone at rev conflicted, at failedAt: a change not seen yet.
	failed   bool
	failedAt time.Time
}

// gapGen marks a change that did not come from a watch: anything may lie before it.
const gapGen = ^uint64(0)

// noteNodeChange records a change of the nodes bucket seen by the members watch gen.
func (e *Engine) noteNodeChange(c kv.Change, gen uint64) {
	inc := ""
	if c.Op == kv.OpPut {
		if r, err := kv.DecodeNode(c.Key, c.Value); err == nil {
			inc = r.Incarnation
		}
	}
	e.viewsMu.Lock()
	defer e.viewsMu.Unlock()
	e.noteNodeLocked(c.Key, c.Revision, inc, gen)
}

func (e *Engine) noteNodeLocked(node string, rev uint64, inc string, gen uint64) {
	now := e.cfg.Clock.Now()
	v := e.views[node]
	if v == nil {
		v = &nodeView{down: map[string]time.Time{}, ordered: map[string]bool{}, proof: map[string]time.Time{}, gen: gapGen}
		e.views[node] = v
	}
	contiguous := gen != gapGen && v.gen == gen && v.rev != 0
	if contiguous && rev <= v.rev {
		return // already seen
	}
	if v.inc != "" && v.inc != inc {
		if contiguous {
			v.down[v.inc] = v.seen
			v.ordered[v.inc] = true
		} else {
			v.down[v.inc] = now
			v.ordered[v.inc] = false
		}
	}
	if !contiguous {
		// Changes may have been missed: an incarnation may have come back and gone again.
		for x := range v.down {
			v.down[x] = now
			v.ordered[x] = false
		}
	}
	if inc != "" {
		delete(v.down, inc)
		delete(v.ordered, inc)
	}
	v.rev, v.inc, v.seen, v.gen, v.failed = rev, inc, now, gen, false
}

// leaseDeadFrom returns when the dead timer of the node lease (node, inc) started, as this
// node saw it: the first sight of the last revision of that lease, or of whatever followed
// when changes may have been missed. ok is false when nothing of the key was ever seen.
func (e *Engine) leaseDeadFrom(node, inc string) (time.Time, bool) {
	if node == e.node && inc != e.incarnation {
		return e.ownEarlierDead(time.Time{})
	}
	e.viewsMu.Lock()
	defer e.viewsMu.Unlock()
	v := e.views[node]
	if v == nil {
		return time.Time{}, false
	}
	return e.deadFromLocked(v, inc), true
}

func (e *Engine) deadFromLocked(v *nodeView, inc string) time.Time {
	if v.inc == inc {
		return v.seen
	}
	if t, ok := v.down[inc]; ok {
		return t
	}
	// Never saw that incarnation: from the last change of the key, which any write of it
	// came before.
	return v.seen
}

// confirmLeaseDead reports whether the node lease (node, inc) is dead for a claim bound to
// it that this node first saw at claimSeen. By this node's clock the lease must have gone a
// TTL without a revision seen (from leaseDeadFrom, or claimSeen if later); then a
// compare-and-set write of a tombstone on the node key, at the last change seen, proves
// that no renewal landed since — a read could not, as a deposed stream leader may answer
// it. The proof holds for every claim of that lease first seen before the tombstone was
// sent: any later claim of a revived lease was written after it. On a conflict the watch
// shows the newer change soon; if it does not, the key is read and the timer starts again.
func (e *Engine) confirmLeaseDead(node, inc string, claimSeen time.Time) bool {
	if node == e.node && inc != e.incarnation {
		_, dead := e.ownEarlierDead(claimSeen)
		return dead
	}
	now := e.cfg.Clock.Now()
	e.viewsMu.Lock()
	v := e.views[node]
	if v != nil {
		if p, ok := v.proof[inc]; ok && claimSeen.Before(p) {
			e.viewsMu.Unlock()
			return true
		}
	}
	switch {
	case v == nil:
		e.viewsMu.Unlock()
		e.readNodeKey(node) // nothing seen of the key yet: see it now, time from now
		return false
	case v.busy, v.failed && now.Sub(v.failedAt) < e.cfg.RenewInterval:
		e.viewsMu.Unlock()
		return false // another worker writes the tombstone, or the watch is about to show a change
	case v.failed:
		e.viewsMu.Unlock()
		e.readNodeKey(node) // the watch did not show the change we conflicted with
		return false
	}
	start := claimSeen
	if from := e.deadFromLocked(v, inc); from.After(start) {
		start = from
	}
	if now.Sub(start) < e.cfg.TTL {
		e.viewsMu.Unlock()
		return false
	}
	if v.inc != inc && v.ordered[inc] {
		e.viewsMu.Unlock()
		return true // the change seen after its last record is the proof
	}
	rev := v.rev
	v.busy = true
	e.viewsMu.Unlock()

	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RenewInterval)
	defer cancel()
	body, _ := json.Marshal(struct {
		Node        string `json:"node"`
		Incarnation string `json:"incarnation"`
		State       string `json:"state"`
		By          string `json:"by"`
	}{node, inc, "lease-ended", e.node})
	sent := e.cfg.Clock.Now()
	_, err := e.store.Nodes.Tombstone(ctx, node, rev, body)
	e.viewsMu.Lock()
	defer e.viewsMu.Unlock()
	v.busy = false
	switch {
	case err == nil:
		if p := v.proof[inc]; sent.After(p) {
			v.proof[inc] = sent
		}
		e.log.Info("node lease ended: no renewal within TTL", "lease", e.store.Nodes.Name()+"/"+node, "incarnation", inc, "revision", rev)
		return claimSeen.Before(sent)
	case errors.Is(err, kv.ErrConflict):
		if v.rev == rev {
			v.failed, v.failedAt = true, e.cfg.Clock.Now()
		}
	}
	return false
}

// readNodeKey reads the node key's latest change from the stream leader and records it as
// seen now, after a change the watch did not show: anything may lie before it.
func (e *Engine) readNodeKey(node string) {
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RenewInterval)
	defer cancel()
	c, err := e.store.Nodes.Latest(ctx, node)
	if errors.Is(err, kv.ErrNotFound) {
		c, err = kv.Change{Key: node}, nil
	}
	if err != nil {
		return
	}
	inc := ""
	if c.Op == kv.OpPut {
		if r, derr := kv.DecodeNode(node, c.Value); derr == nil {
			inc = r.Incarnation
		}
	}
	e.viewsMu.Lock()
	defer e.viewsMu.Unlock()
	if v := e.views[node]; v != nil && v.rev == c.Revision && !v.failed {
		return // nothing new
	}
	e.noteNodeLocked(node, c.Revision, inc, gapGen)
}

// takeoverLimiter is a token bucket bounding takeovers per second.
type takeoverLimiter struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// reserve takes one token and returns how long to wait before using it.
func (l *takeoverLimiter) reserve(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		l.tokens = l.burst
	} else {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	l.tokens--
	if l.tokens >= 0 {
		return 0
	}
	return time.Duration(-l.tokens / l.rate * float64(time.Second))
}

// giveBack returns a reserved token that was not used.
func (l *takeoverLimiter) giveBack() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tokens = min(l.burst, l.tokens+1)
}
