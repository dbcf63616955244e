package ownership

import (
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"time"
)

// Placement spreads workers over the live nodes by rendezvous (highest-random-weight)
// hashing with bounded loads: every node computes, from the membership it sees and the names
// it registered (the same on every node), the same assignment. Names are taken in order;
// each goes to the first node in its rendezvous order whose load is below its cap,
// ceil(names × weight / total weight). Plain rendezvous hashing leaves ±5% per node at
// 1,000 names (max/min ≈ 1.2); the cap keeps max/min near 1, and a join still moves only
// about 1/n of the names.
//
// The preferred node claims at once; any other node claims a name only after it stayed
// unowned for the claim grace, so that a name whose preferred node is down or does not
// register it still runs.

// score is the weighted rendezvous score of node for name: -weight/ln(h), h uniform in (0,1).
func score(name, node string, weight int) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(node))
	x := mix(h.Sum64())
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

// Preferred returns the node that should own name among the live, non-draining members as
// this node sees them (this node counts as live unless it drains). "" if there is none.
func (e *Engine) Preferred(name string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.preferredLocked(name)
}

func (e *Engine) preferredLocked(name string) string {
	if e.assignment == nil {
		e.assignment = e.assign()
	}
	if to, ok := e.assignment[name]; ok {
		return to
	}
	// A name this node did not register: plain rendezvous.
	return rendezvous(name, e.candidatesLocked())[0].node
}

type candidate struct {
	node   string
	weight int
}

// candidatesLocked returns the nodes that may own workers: live, not draining (this node
// counts as live). e.mu must be held.
func (e *Engine) candidatesLocked() []candidate {
	var out []candidate
	if !e.draining {
		out = append(out, candidate{e.node, e.info.Weight})
	}
	for node, m := range e.members {
		if node != e.node && !m.Draining {
			out = append(out, candidate{node, m.Capacity})
		}
	}
	if len(out) == 0 {
		out = append(out, candidate{e.node, e.info.Weight})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].node < out[j].node })
	return out
}

type scored struct {
	node  string
	score float64
}

// rendezvous orders nodes by their score for name, best first.
func rendezvous(name string, nodes []candidate) []scored {
	out := make([]scored, len(nodes))
	for i, n := range nodes {
		out[i] = scored{n.node, score(name, n.node, n.weight)}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].score != out[j].score {
			return out[i].score > out[j].score
		}
		return out[i].node < out[j].node
	})
	return out
}

// assign computes the bounded-load assignment of the registered names. e.mu must be held.
func (e *Engine) assign() map[string]string {
	nodes := e.candidatesLocked()
	names := make([]string, 0, len(e.workers))
	for name := range e.workers {
		names = append(names, name)
	}
	sort.Strings(names)
	total := 0
	for _, n := range nodes {
		total += max(n.weight, 1)
	}
	limit := map[string]int{}
	for _, n := range nodes {
		limit[n.node] = int(math.Ceil(float64(len(names)) * float64(max(n.weight, 1)) / float64(total)))
	}
	load := map[string]int{}
	out := make(map[string]string, len(names))
	for _, name := range names {
		order := rendezvous(name, nodes)
		to := order[0].node
		for _, s := range order {
			if load[s.node] < limit[s.node] {
				to = s.node
				break
			}
		}
		load[to]++
		out[name] = to
	}
	return out
}

// placementChanged drops the cached assignment and names digest. e.mu must be held.
func (e *Engine) placementChanged() {
	e.assignment = nil
	e.digest = ""
}

// namesDigest returns a short hash of the registered names.
func (e *Engine) namesDigest() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.digest == "" {
		names := make([]string, 0, len(e.workers))
		for name := range e.workers {
			names = append(names, name)
		}
		sort.Strings(names)
		h := fnv.New64a()
		for _, n := range names {
			_, _ = h.Write([]byte(n))
			_, _ = h.Write([]byte{0})
		}
		e.digest = fmt.Sprintf("%d:%016x", len(names), h.Sum64())
	}
	return e.digest
}

// kickRebalance asks for a rebalance after the next quiet period.
func (e *Engine) kickRebalance() {
	select {
	case e.rebalanceKick <- struct{}{}:
	default:
	}
}

// claimDelay returns how long this node must wait, from when it saw name unowned, before it
// may claim it: 0 for the preferred node, the claim grace for others.
func (e *Engine) claimDelay(name string) time.Duration {
	if e.Preferred(name) == e.node {
		return 0
	}
	return e.cfg.ClaimGrace
}

// rebalance hands over, at a bounded rate, the workers this node owns but is no longer the
// preferred node for. It runs after membership has been quiet for RebalanceDelay, so that
// flapping membership does not move workers back and forth.
func (e *Engine) rebalance() {
	var quiet Timer
	var quietC <-chan time.Time
	for {
		select {
		case <-e.ctx.Done():
			if quiet != nil {
				quiet.Stop()
			}
			return
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
// this node owns but is no longer the preferred node for. A membership change on the way
// ends it; the next quiet period starts over.
func (e *Engine) moveMisplaced() {
	e.mu.Lock()
	leaving := e.closing || e.draining // Close or the drain moves them all
	e.mu.Unlock()
	if leaving {
		return
	}
	digest := e.namesDigest()
	var ws []*worker
	for _, name := range e.Owned() {
		e.mu.Lock()
		w := e.workers[name]
		to := e.preferredLocked(name)
		target, live := e.members[to]
		e.mu.Unlock()
		// Hand over only to a live node that registered the same names: it computes the same
		// placement and will claim at once.
		if w == nil || to == "" || to == e.node || !live || target.Workers != digest {
			continue
		}
		ws = append(ws, w)
	}
	kicked := false
	e.pace(e.ctx, pacedStop{what: "rebalance", verb: "handed over", rate: e.cfg.RebalanceRate,
		ask:  func(w *worker) { w.requestHandoff("join") },
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
