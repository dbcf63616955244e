package ownership

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/jetcoord/coordinator/kv"
)

// Member is a live node as seen in the nodes bucket.
type Member struct {
	kv.NodeRecord
	Revision uint64 `json:"revision"`

	seen  time.Time // local (monotonic) time this revision was first seen
	stale bool      // not renewed within RenewDeadline on our clock: out of placement
}

// MaxWeight bounds a node's placement weight (its record's capacity): a larger value, in a
// record written by hand say, is taken as MaxWeight so that weight sums cannot overflow.
const MaxWeight = 1000

// Members returns the live nodes, sorted by name. It is this node's view, from watching the
// nodes bucket.
func (e *Engine) Members() []Member {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Member, 0, len(e.members))
	for _, m := range e.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// Ready reports whether this node can claim right now: it has read the current claims, still
// watches them (false while the workers bucket is missing, say), and
// its membership record was written within the renew deadline.
func (e *Engine) Ready() bool {
	select {
	case <-e.synced:
	default:
		return false
	}
	if !e.watching.Load() {
		return false // claims cannot be watched: the node cannot take anything over
	}
	e.mu.Lock()
	last := e.memberRenewed
	e.mu.Unlock()
	return !last.IsZero() && e.cfg.Clock.Now().Sub(last) < e.cfg.RenewDeadline
}

func (e *Engine) nodeRecord() kv.NodeRecord {
	now := e.cfg.Clock.Now().UTC()
	return kv.NodeRecord{Node: e.node, Incarnation: e.incarnation, Addresses: e.info.Addresses,
		Version: e.info.Version, Started: e.started0, Renewed: now, Capacity: e.info.Weight, Draining: e.isDraining(),
		Workers: e.namesDigest()}
}

// keepMembership writes this node's record and renews it every RenewInterval until the
// engine closes. A record left by an earlier incarnation of this node is taken over with
// compare-and-set.
func (e *Engine) keepMembership() {
	defer e.serveRuntime()()
	var rev uint64
	var reply chan error // a writeMembership caller waiting for this write
	for {
		if f := e.testBeforeRenew; f != nil {
			f(e.node)
		}
		err := e.renewMembership(&rev)
		e.clearStaleMembers()
		if reply != nil {
			reply <- err
			reply = nil
		}
		next := e.cfg.RenewInterval
		if err != nil {
			e.log.Debug("membership renewal failed", "err", err)
			next = e.cfg.RenewInterval / 4
		}
		t := e.cfg.Clock.NewTimer(next)
		select {
		case <-e.memberStop:
			t.Stop()
			e.leave(rev)
			return
		case reply = <-e.memberWrite:
		case <-t.C():
		}
		t.Stop()
	}
}

// renewMembership writes this node's record once.
func (e *Engine) renewMembership(rev *uint64) error {
	sent := e.cfg.Clock.Now()
	fresh := *rev == 0
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RenewInterval)
	defer cancel()
	rec := e.nodeRecord().Encode()
	var err error
	if *rev == 0 {
		*rev, err = e.store.Nodes.Create(ctx, e.node, rec, e.cfg.TTL)
		if errors.Is(err, kv.ErrExists) {
			var cur kv.Entry
			if cur, err = e.store.Nodes.Get(ctx, e.node); err == nil {
				if r, derr := kv.DecodeNode(e.node, cur.Value); derr == nil && r.Incarnation != e.incarnation {
					e.log.Info("taking over the node record of an earlier incarnation", "incarnation", r.Incarnation)
				}
				*rev, err = e.store.Nodes.Update(ctx, e.node, rec, cur.Revision, e.cfg.TTL)
			}
		}
		if err == nil {
			e.publishStored(Event{Kind: KindNode, Type: "joined", Name: e.node})
		}
	} else {
		var nrev uint64
		nrev, err = e.store.Nodes.Update(ctx, e.node, rec, *rev, e.cfg.TTL)
		switch {
		case errors.Is(err, kv.ErrConflict):
			// Either a retry conflicting with its own landed write, or the record went
			// away (expired while this node could not renew, deleted or purged by hand),
			// or another process wrote it. Only the first keeps the node lease; otherwise
			// every term bound to it ends now, and the record is written again.
			cur, gerr := e.store.Nodes.GetLeader(ctx, e.node)
			switch {
			case errors.Is(gerr, kv.ErrNotFound):
				e.log.Warn("node lease lost: this node's membership record is gone (expired while this node could not renew, or deleted); its workers stop and it joins again")
				e.nodeLeaseLost()
				*rev = 0
				return err
			case gerr == nil:
				if r, derr := kv.DecodeNode(e.node, cur.Value); derr == nil && r.Incarnation == e.incarnation {
					*rev = cur.Revision
					return nil
				}
				e.log.Error("node lease lost: this node's membership record was written by another process: is another node using the same name?", "node", e.node)
				e.nodeLeaseLost()
			}
			*rev = 0
		case err == nil:
			*rev = nrev
		}
	}
	e.metrics.Renewal(e.node, e.cfg.Clock.Now().Sub(sent), err)
	if err != nil {
		return err
	}
	e.nodeLeaseRenewed(sent, fresh)
	e.mu.Lock()
	e.memberRenewed = sent
	e.mu.Unlock()
	return nil
}

// writeMembership writes this node's record now and waits for the result.
func (e *Engine) writeMembership(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case e.memberWrite <- reply:
	case <-ctx.Done():
		return ctx.Err()
	case <-e.memberStop:
		return ErrClosed
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// leave deletes this node's record on a graceful stop.
func (e *Engine) leave(rev uint64) {
	if rev == 0 {
		return
	}
	// stopCtx: a Close that gave up on the store (GiveUpReleases) does not wait here either.
	ctx, cancel := context.WithTimeout(e.stopCtx, 2*time.Second)
	defer cancel()
	if err := e.store.Nodes.Delete(ctx, e.node, rev); err == nil {
		e.publish(Event{Kind: KindNode, Type: "left", Name: e.node})
	}
}

// watchMembers keeps e.members up to date from the nodes bucket.
func (e *Engine) watchMembers() {
	for e.ctx.Err() == nil {
		w, err := e.store.Nodes.Watch(e.ctx)
		if err != nil {
			select {
			case <-e.ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		synced := w.Synced()
		gen := e.membersGen.Add(1)
	loop:
		for {
			select {
			case <-synced:
				synced = nil
				select {
				case <-e.membersSynced:
				default:
					close(e.membersSynced)
				}
			case c, ok := <-w.Changes():
				if !ok {
					break loop
				}
				e.noteNodeChange(c, gen)
				e.applyMember(c)
			}
		}
		w.Stop()
	}
}

func (e *Engine) applyMember(c kv.Change) {
	e.mu.Lock()
	prev, had := e.members[c.Key]
	switch c.Op {
	case kv.OpPut:
		r, err := kv.DecodeNode(c.Key, c.Value)
		if err != nil {
			e.mu.Unlock()
			e.log.Warn("ignoring a node record that is not valid", "key", c.Key, "err", err)
			return
		}
		if r.Capacity > MaxWeight {
			if !had || prev.Revision == 0 || prev.Capacity != MaxWeight {
				e.log.Warn("node record with a capacity above the maximum: taken as the maximum", "key", c.Key, "capacity", r.Capacity, "max", MaxWeight)
			}
			r.Capacity = MaxWeight
		}
		e.members[c.Key] = Member{NodeRecord: r, Revision: c.Revision, seen: e.cfg.Clock.Now()}
	default:
		delete(e.members, c.Key)
	}
	if e.expect > 1 && len(e.members) >= e.expect {
		e.formed = true // see settling
	}
	cur, has := e.members[c.Key]
	changed := had != has || (has && (prev.stale || prev.Draining != cur.Draining || prev.Capacity != cur.Capacity ||
		prev.Incarnation != cur.Incarnation || prev.Workers != cur.Workers))
	if had && !has && prev.stale {
		// The record of a node already out of placement expired or was deleted: nothing
		// moves again.
		changed = false
	}
	if changed {
		e.placementChanged()
	}
	first := e.firstMember()
	e.mu.Unlock()
	if c.Op == kv.OpExpire && had && first == e.node {
		// One node reports an expiry, not every survivor.
		e.publish(Event{Kind: KindNode, Type: "expired", Name: c.Key, Reason: "ttl"})
	}
	if changed {
		e.membersChanged()
	}
}

// firstMember returns the smallest live node name; e.mu must be held.
func (e *Engine) firstMember() string {
	first := ""
	for name := range e.members {
		if first == "" || name < first {
			first = name
		}
	}
	return first
}

// clearStaleMembers deletes, with compare-and-set, the records of other nodes that stayed at
// one revision for longer than TTL. A live node renews its record every RenewInterval, and
// the server expires records by their TTL; what is left is a record without a TTL (written
// by hand, say), which would otherwise count as a member forever and pull workers to a node
// that never claims them.
func (e *Engine) clearStaleMembers() {
	now := e.cfg.Clock.Now()
	type stale struct {
		name string
		rev  uint64
	}
	var todo []stale
	e.mu.Lock()
	for name, m := range e.members {
		if name != e.node && !m.seen.IsZero() && now.Sub(m.seen) > e.cfg.TTL+e.cfg.RenewInterval {
			todo = append(todo, stale{name, m.Revision})
		}
	}
	e.mu.Unlock()
	for _, s := range todo {
		ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RenewInterval)
		err := e.store.Nodes.Delete(ctx, s.name, s.rev)
		cancel()
		if err == nil {
			e.log.Warn("cleared a node record not renewed within TTL (no TTL on the entry?)", "key", s.name, "revision", s.rev)
		}
	}
}
