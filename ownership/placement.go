package ownership

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Placement spreads workers over the live nodes by rendezvous (highest-random-weight)
// hashing with bounded loads, and keeps them where they run. Every node computes, from the
// membership it sees, the names it registered (the same on every node) and the current
// owner of each name (from the claims it watches), the same plan:
//
//   - Each candidate node (live, not draining, its record renewed within RenewDeadline on
//     this node's clock) has a share, ceil(names × weight / total weight), and a slack,
//     RebalanceThreshold × share but at least one worker.
//   - A node keeps the names it owns, unless some node owns more than its share + slack or
//     fewer than its share − slack: then every node above its share keeps the share it
//     scores highest and the rest are free.
//   - Free names (unowned, owned by a node that is gone or drains, or shed above) go, in
//     name order, to the node with the best rendezvous score among those below their share.
//
// So a join moves only what balance needs, a leave moves only the leaving node's names, a
// singleton or a small set stays where it runs, and a dead node's record expiring moves
// nothing (it stopped counting when it went stale). The plan is computed once per change
// of membership and per batch of registrations (O(n log n + n × nodes)), not per query.
//
// The node a plan gives a free name to claims it at once; any other node claims it only
// after it stayed unowned for the claim grace, so that a name whose preferred node is down
// or does not register it still runs. A planned move (release, drain, stop, rebalance) names
// its successor in the release record: that node claims at once, the others wait
// successorWait first.

// successorWait is how long nodes other than the successor named in a release record leave
// the worker to it (at most ClaimGrace).
const successorWait = time.Second

// DefaultRebalanceThreshold is Config.RebalanceThreshold's default.
const DefaultRebalanceThreshold = 0.1

// score is the weighted rendezvous score of node for name: -weight/ln(h), h uniform in (0,1).
func score(name, node string, weight int) float64 {
	return scoreFrom(nameHash(name), node, weight)
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// nameHash is the FNV-1a state after name and a 0 byte: the part of score that depends on
// the name only, computed once per name rather than once per node.
func nameHash(name string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint64(name[i])) * fnvPrime
	}
	return h * fnvPrime // ^ 0
}

// scoreFrom is score given nameHash(name).
func scoreFrom(h uint64, node string, weight int) float64 {
	for i := 0; i < len(node); i++ {
		h = (h ^ uint64(node[i])) * fnvPrime
	}
	x := mix(h)
	u := (float64(x>>11) + 0.5) / (1 << 53) // in (0,1)
	return -float64(max(weight, 1)) / math.Log(u)
}

// mix is a 64-bit finaliser (splitmix64) so that similar names spread well.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

type candidate struct {
	node   string
	weight int
}

// plan is one computed placement.
type plan struct {
	nodes []candidate    // the candidates, sorted by name
	names []string       // the names placed, sorted
	to    []uint16       // names[i] → the node that should own it, nodes[to[i]]
	load  map[string]int // names per node in the plan
	share map[string]int // each node's share
}

// noNode is the index of no node in plan.to.
const noNode = math.MaxUint16

// target returns the node that should own name, if the plan placed it. The plan keeps two
// slices, not a map: it is kept for as long as nothing changes, with an entry per name.
func (p *plan) target(name string) (string, bool) {
	i := sort.SearchStrings(p.names, name)
	if i == len(p.names) || p.names[i] != name || p.to[i] == noNode {
		return "", false
	}
	return p.nodes[p.to[i]].node, true
}

// targets returns the whole plan as a map, name → node (for tests and logs).
func (p *plan) targets() map[string]string {
	m := make(map[string]string, len(p.names))
	for i, name := range p.names {
		if p.to[i] != noNode {
			m[name] = p.nodes[p.to[i]].node
		}
	}
	return m
}

// rendezvous returns the candidate with the best score for name, ignoring loads ("" if none).
func (p *plan) rendezvous(name string) string {
	best, bestScore := "", 0.0
	nh := nameHash(name)
	for _, n := range p.nodes {
		if s := scoreFrom(nh, n.node, n.weight); best == "" || s > bestScore {
			best, bestScore = n.node, s
		}
	}
	return best
}

// placement is the engine's cached plan and the digest of its registered names.
type placement struct {
	plan *plan // nil: compute on the next query
	// pending counts names registered or unregistered since plan was computed; once it is a
	// tenth of the names the plan is recomputed (names it does not know are placed by plain
	// rendezvous meanwhile), so that n Registers cost O(n log n) in all.
	pending int
	planned int // names in plan
	sum     uint64
	count   int
	// computed counts names placed by all plans so far (tests check the amortised cost).
	computed int
}

// placeNames computes a plan for names (sorted) whose current owners are owners[i] ("" for
// none) and which a planned move took from node from[i] ("" for none; from may be nil); see
// the top of this file.
func placeNames(nodes []candidate, names, owners, from []string, threshold float64) *plan {
	p := &plan{nodes: nodes, names: names, to: make([]uint16, len(names)),
		load: make(map[string]int, len(nodes)), share: make(map[string]int, len(nodes))}
	for i := range p.to {
		p.to[i] = noNode
	}
	if len(nodes) == 0 || len(nodes) >= noNode {
		return p
	}
	idx := make(map[string]int, len(nodes))
	total := 0
	for i, n := range nodes {
		idx[n.node] = i
		total += max(n.weight, 1)
	}
	share := make([]int, len(nodes))
	slack := make([]int, len(nodes))
	for i, n := range nodes {
		share[i] = int(math.Ceil(float64(len(names)) * float64(max(n.weight, 1)) / float64(total)))
		slack[i] = max(1, int(threshold*float64(share[i])))
	}
	held := make([][]int, len(nodes))
	var free []int
	for i, o := range owners {
		if j, ok := idx[o]; ok {
			held[j] = append(held[j], i)
		} else {
			free = append(free, i)
		}
	}
	// Rebalance when a node is off its share by more than its slack, one way or the other;
	// then every node above its share comes down to it.
	uneven := false
	for j := range nodes {
		if len(held[j]) < share[j]-slack[j] || len(held[j]) > share[j]+slack[j] {
			uneven = true
		}
	}
	load := make([]int, len(nodes))
	for j, h := range held {
		if uneven && len(h) > share[j] {
			// Keep the share this node scores highest; shed the rest.
			// A name a planned move brought here is kept first: shed, it could only go
			// back where it came from or move a second time.
			type kept struct {
				i     int
				moved bool
				score float64
			}
			ks := make([]kept, len(h))
			for k, i := range h {
				ks[k] = kept{i, movedFrom(from, i) != "", score(names[i], nodes[j].node, nodes[j].weight)}
			}
			sort.Slice(ks, func(a, b int) bool {
				if ks[a].moved != ks[b].moved {
					return ks[a].moved
				}
				if ks[a].score != ks[b].score {
					return ks[a].score > ks[b].score
				}
				return ks[a].i < ks[b].i
			})
			for k := range ks {
				h[k] = ks[k].i
			}
			free = append(free, h[share[j]:]...)
			h = h[:share[j]]
		}
		for _, i := range h {
			p.to[i] = uint16(j)
		}
		load[j] = len(h)
	}
	sort.Ints(free) // name order: every node places them alike
	for _, i := range free {
		best, bestScore := -1, 0.0
		nh := nameHash(names[i])
		// Not back to the node a planned move took it from: to another node below its
		// share, else to one within its slack above it; only if neither exists, back.
		avoid, pass := movedFrom(from, i), 0
		if avoid == "" {
			pass = 2
		}
		for ; pass < 3; pass++ {
			for j, n := range nodes {
				room := share[j]
				if pass == 1 {
					room += slack[j]
				}
				if load[j] >= room || (pass < 2 && n.node == avoid) {
					continue
				}
				if s := scoreFrom(nh, n.node, n.weight); best < 0 || s > bestScore {
					best, bestScore = j, s
				}
			}
			if best >= 0 {
				break
			}
		}
		if best < 0 { // cannot happen: the shares add up to at least the names
			best = 0
		}
		load[best]++
		p.to[i] = uint16(best)
	}
	for j, n := range nodes {
		p.load[n.node] = load[j]
		p.share[n.node] = share[j]
	}
	return p
}

// movedFrom returns from[i], "" when from is nil.
func movedFrom(from []string, i int) string {
	if from == nil {
		return ""
	}
	return from[i]
}

// Preferred returns the node that should own name among the live, non-draining members as
// this node sees them (this node counts as live unless it drains). "" if there is none.
func (e *Engine) Preferred(name string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.preferredLocked(name)
}

func (e *Engine) preferredLocked(name string) string {
	p := e.planLocked()
	if to, ok := p.target(name); ok {
		return to
	}
	// A name this node did not register, or registered since the plan: plain rendezvous.
	return p.rendezvous(name)
}

// planLocked returns the current plan, computing it if need be. e.mu must be held.
func (e *Engine) planLocked() *plan {
	if e.placement.plan != nil {
		return e.placement.plan
	}
	names := make([]string, 0, len(e.workers))
	for name := range e.workers {
		names = append(names, name)
	}
	sort.Strings(names)
	owners := make([]string, len(names))
	from := make([]string, len(names))
	for i, name := range names {
		if w := e.workers[name]; w != nil {
			owners[i], from[i] = w.ownerNode()
		}
	}
	e.placement.plan = placeNames(e.candidatesLocked(), names, owners, from, e.cfg.RebalanceThreshold)
	e.placement.planned = len(names)
	e.placement.pending = 0
	e.placement.computed += len(names)
	return e.placement.plan
}

// ownerNode returns the node that holds the worker's claim as last seen and the node a
// planned move took it from (the claim's From), "" for none.
func (w *worker) ownerNode() (owner, from string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.obs.present && w.obs.malformed == nil {
		return w.obs.claim().Node, w.obs.claim().From
	}
	return "", ""
}

// candidatesLocked returns the nodes that may own workers: live (renewed within
// RenewDeadline), not draining; this node counts as live. e.mu must be held.
func (e *Engine) candidatesLocked() []candidate {
	var out []candidate
	if !e.draining {
		out = append(out, candidate{e.node, e.info.Weight})
	}
	for node, m := range e.members {
		if node != e.node && !m.Draining && !m.stale {
			out = append(out, candidate{node, m.Capacity})
		}
	}
	if len(out) == 0 {
		out = append(out, candidate{e.node, e.info.Weight})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].node < out[j].node })
	return out
}

// placementChanged drops the cached plan: membership, draining or owners changed. e.mu
// must be held.
func (e *Engine) placementChanged() {
	e.placement.plan = nil
}

// nameChanged notes a name registered (added) or unregistered. e.mu must be held.
func (e *Engine) nameChanged(name string, added bool) {
	x := mix(nameHash(name))
	if added {
		e.placement.sum += x
		e.placement.count++
	} else {
		e.placement.sum -= x
		e.placement.count--
	}
	e.placement.pending++
	if e.placement.pending*10 > e.placement.planned+10 {
		e.placement.plan = nil
	}
}

// namesDigest returns a short hash of the registered names, kept up to date by nameChanged.
func (e *Engine) namesDigest() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.digestLocked()
}

func (e *Engine) digestLocked() string {
	return fmt.Sprintf("%d:%016x", e.placement.count, e.placement.sum)
}

// kickRebalance asks for a rebalance after the next quiet period.
func (e *Engine) kickRebalance() {
	select {
	case e.rebalanceKick <- struct{}{}:
	default:
	}
}

// liveTargetLocked reports whether node can take a worker from this node at once: a live,
// non-draining member that registered the same names. e.mu must be held.
func (e *Engine) liveTargetLocked(node, digest string) bool {
	m, ok := e.members[node]
	return node != e.node && ok && !m.Draining && !m.stale && m.Workers == digest
}

// successor picks the node that is to claim name when this node releases it: the node the
// plan gives it to or, when that is this node (a Release) or cannot take it, the live
// member with the most room in the plan (best score on a tie). "" if there is none.
func (e *Engine) successor(name string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.planLocked()
	digest := e.digestLocked()
	if to, _ := p.target(name); e.liveTargetLocked(to, digest) {
		return to
	}
	// Prefer nodes that registered the same names; one that registered others may still
	// have this one (if not, the others wait successorWait for nothing).
	for _, same := range []bool{true, false} {
		best, bestRoom, bestScore := "", 0, 0.0
		for _, c := range p.nodes {
			d := digest
			if !same {
				d = e.members[c.node].Workers
			}
			if !e.liveTargetLocked(c.node, d) {
				continue
			}
			room := p.share[c.node] - p.load[c.node]
			s := score(name, c.node, c.weight)
			if best == "" || room > bestRoom || (room == bestRoom && s > bestScore) {
				best, bestRoom, bestScore = c.node, room, s
			}
		}
		if best != "" {
			return best
		}
	}
	return ""
}

// claimDelay returns how long this node must wait, from when it saw name unowned (o), before
// it may claim it: 0 for the successor a release names; for the others, successorWait
// first; then 0 for the preferred node and the claim grace for others.
func (e *Engine) claimDelay(name string, o observation) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	pref := e.preferredLocked(name) == e.node
	if o.released && o.successor != "" {
		m, ok := e.members[o.successor]
		if o.successor == e.node {
			return 0
		}
		if ok && !m.stale && !m.Draining {
			wait := min(successorWait, e.cfg.ClaimGrace)
			if pref {
				return wait
			}
			return max(wait, e.cfg.ClaimGrace)
		}
	}
	if pref {
		return 0
	}
	return e.cfg.ClaimGrace
}

// takeoverDelay is how long, after a claim ran out (a TTL with no renewal on this node's
// clock), this node waits before claiming it: 0 for the preferred node, which its owner is
// no longer once its record went stale; the claim grace for the others.
func (e *Engine) takeoverDelay(name string) time.Duration {
	if e.Preferred(name) == e.node {
		return 0
	}
	return e.cfg.ClaimGrace
}

// markStaleMembers takes out of placement the members whose record this node has not seen
// renewed within RenewDeadline; it returns when the next one would go stale. Their records
// expiring later changes nothing. A node that cannot renew its own record cannot tell and
// marks nothing.
func (e *Engine) markStaleMembers() time.Duration {
	now := e.cfg.Clock.Now()
	next := e.cfg.RenewDeadline
	e.mu.Lock()
	if e.memberRenewed.IsZero() || now.Sub(e.memberRenewed) >= e.cfg.RenewDeadline {
		e.mu.Unlock()
		return e.cfg.RenewInterval / 4
	}
	var gone []string
	for name, m := range e.members {
		if name == e.node || m.stale || m.seen.IsZero() {
			continue
		}
		if left := e.cfg.RenewDeadline - now.Sub(m.seen); left > 0 {
			next = min(next, left)
			continue
		}
		m.stale = true
		e.members[name] = m
		gone = append(gone, name)
	}
	if len(gone) > 0 {
		e.placementChanged()
	}
	e.mu.Unlock()
	if len(gone) > 0 {
		e.log.Info("member record not renewed within the renew deadline: placing workers without it", "members", gone)
		e.membersChanged()
	}
	return max(next, time.Millisecond)
}

// rebalance hands over, at a bounded rate, the workers this node owns but the plan gives to
// another node. It runs after membership has been quiet for RebalanceDelay, so that
// flapping membership does not move workers back and forth. It also takes members whose
// record went stale out of placement.
func (e *Engine) rebalance() {
	var quiet Timer
	var quietC <-chan time.Time
	stale := e.cfg.Clock.NewTimer(e.cfg.RenewInterval)
	defer stale.Stop()
	for {
		select {
		case <-e.ctx.Done():
			if quiet != nil {
				quiet.Stop()
			}
			return
		case <-stale.C():
			stale.Reset(e.markStaleMembers())
		case <-e.rebalanceKick:
			if quiet != nil {
				quiet.Stop()
			}
			quiet = e.cfg.Clock.NewTimer(e.cfg.RebalanceDelay)
			quietC = quiet.C()
		case <-quietC:
			quietC = nil
			e.moveMisplaced()
		}
	}
}

// moveMisplaced hands over, in paced batches at RebalanceRate (see stop.go), the workers
// this node owns but the plan, computed afresh, gives to another node. A membership change on
// the way ends it; the next quiet period starts over.
func (e *Engine) moveMisplaced() {
	e.mu.Lock()
	if e.closing || e.draining { // Close or the drain moves them all
		e.mu.Unlock()
		return
	}
	e.placementChanged() // owners have settled since the last plan, most likely
	p := e.planLocked()
	digest := e.digestLocked()
	var ws []*worker
	for name, w := range e.workers {
		// Hand over only to a live node that registered the same names: it computes the
		// same plan, and the release names it, so it claims at once.
		if to, _ := p.target(name); to != e.node && e.liveTargetLocked(to, digest) && w.owning() {
			ws = append(ws, w)
		}
	}
	e.mu.Unlock()
	sortWorkers(ws)
	kicked := false
	e.pace(e.ctx, pacedStop{what: "rebalance", verb: "handed over", rate: e.cfg.RebalanceRate,
		ask:  func(w *worker) { w.requestHandoff("rebalance") },
		gone: func(w *worker) bool { return !w.owning() },
		abort: func() bool {
			select {
			case <-e.rebalanceKick:
				kicked = true
			default:
			}
			return kicked || e.isDraining()
		}}, ws)
	if kicked {
		// Membership changed again: start over after the next quiet period.
		e.kickRebalance()
	}
}
