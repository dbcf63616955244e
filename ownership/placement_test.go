package ownership

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/natstest"
	"github.com/jetcoord/coordinator/kv"
)

// fleet records the runs of many workers over several nodes.
type fleet struct {
	mu   sync.Mutex
	runs map[string]*runs
}

func newFleet() *fleet { return &fleet{runs: map[string]*runs{}} }

func (f *fleet) of(name string) *runs {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.runs[name]
	if r == nil {
		r = &runs{}
		f.runs[name] = r
	}
	return r
}

func (f *fleet) register(names []string, node string) func(*Engine) {
	return func(e *Engine) {
		for _, n := range names {
			_ = e.Register(n, f.of(n).worker(node))
		}
	}
}

// perNode counts running workers by node; it fails the test if a worker runs twice.
func (f *fleet) perNode(t *testing.T, names []string) (map[string]int, int) {
	t.Helper()
	count := map[string]int{}
	total := 0
	for _, n := range names {
		l := f.of(n).running()
		if len(l) > 1 {
			t.Fatalf("worker %s runs %d times: %+v", n, len(l), l)
		}
		if len(l) == 1 {
			count[l[0].node]++
			total++
		}
	}
	return count, total
}

func (f *fleet) checkNoOverlap(t *testing.T, names []string) {
	t.Helper()
	for _, n := range names {
		f.of(n).checkNoOverlap(t)
	}
}

// startTogether starts one engine per name at the same moment.
func startTogether(t *testing.T, srv *natstest.Server, cfg Config, register func(string) func(*Engine), nodes ...string) []*node {
	t.Helper()
	out := make([]*node, len(nodes))
	for i, n := range nodes {
		nc := srv.Connect()
		st, err := kv.Open(context.Background(), nc, kv.Options{Namespace: "t"})
		if err != nil {
			t.Fatal(err)
		}
		e, err := New(st, n, cfg, WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		register(n)(e)
		t.Cleanup(func() { _ = e.Close() })
		out[i] = &node{name: n, nc: nc, e: e}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(out))
	for i, x := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			errs[i] = x.e.Start(ctx)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("tenant-%04d", i)
	}
	return out
}

// balanced reports whether every node in nodes runs within ±tol of total/len(nodes).
func balanced(count map[string]int, total int, tol float64, nodes ...string) bool {
	want := float64(total) / float64(len(nodes))
	for _, n := range nodes {
		if c := float64(count[n]); c < want*(1-tol) || c > want*(1+tol) {
			return false
		}
	}
	return true
}

// stickyTol is how far from an even share placement may leave a node: owners keep their
// workers while every node is within RebalanceThreshold of its share (plus rounding).
const stickyTol = DefaultRebalanceThreshold + 0.01

const fleetTTL = 5 * time.Second // 1,000 workers per node renew every second

func TestSpreadAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 workers")
	}
	srv := natstest.Run(t)
	ws := names(1000)
	f := newFleet()
	startTogether(t, srv, ConfigForTTL(fleetTTL), func(n string) func(*Engine) { return f.register(ws, n) }, "a", "b", "c")
	var count map[string]int
	waitFor(t, "all 1,000 workers to run", 60*time.Second, func() bool {
		var total int
		count, total = f.perNode(t, ws)
		return total == len(ws) && balanced(count, total, stickyTol, "a", "b", "c")
	})
	t.Logf("per node: %v", count)
	f.checkNoOverlap(t, ws)
}

// Rolling start (1 node, then 2, then 3) converges to the same balance with no worker ever
// running twice.
func TestRollingStartRebalances(t *testing.T) {
	if testing.Short() {
		t.Skip("many workers")
	}
	srv := natstest.Run(t)
	ws := names(300)
	f := newFleet()
	cfg := ConfigForTTL(fleetTTL)
	startNode(t, srv, "a", cfg, f.register(ws, "a"))
	waitFor(t, "a to run everything", 30*time.Second, func() bool { _, n := f.perNode(t, ws); return n == len(ws) })
	startNode(t, srv, "b", cfg, f.register(ws, "b"))
	waitFor(t, "a and b to share", 60*time.Second, func() bool {
		c, n := f.perNode(t, ws)
		return n == len(ws) && balanced(c, n, stickyTol, "a", "b")
	})
	start := time.Now()
	startNode(t, srv, "c", cfg, f.register(ws, "c"))
	var count map[string]int
	waitFor(t, "three to share", 60*time.Second, func() bool {
		var n int
		count, n = f.perNode(t, ws)
		return n == len(ws) && balanced(count, n, stickyTol, "a", "b", "c")
	})
	t.Logf("converged %v after the third node joined: %v", time.Since(start).Round(time.Millisecond), count)
	f.checkNoOverlap(t, ws)
}

// A crashed node's workers spread over all survivors, not onto one.
func TestCrashSpreadsOverSurvivors(t *testing.T) {
	if testing.Short() {
		t.Skip("many workers")
	}
	srv := natstest.Run(t)
	ws := names(300)
	f := newFleet()
	nodes := startTogether(t, srv, ConfigForTTL(fleetTTL), func(n string) func(*Engine) { return f.register(ws, n) }, "a", "b", "c")
	waitFor(t, "balance", 60*time.Second, func() bool {
		c, n := f.perNode(t, ws)
		return n == len(ws) && balanced(c, n, stickyTol, "a", "b", "c")
	})
	before, _ := f.perNode(t, ws)
	crash := time.Now()
	nodes[2].nc.Close() // c is cut off: to the others it crashed
	var count map[string]int
	waitFor(t, "survivors to run everything", 60*time.Second, func() bool {
		var n int
		count, n = f.perNode(t, ws)
		return n == len(ws) && count["c"] == 0
	})
	t.Logf("all workers running again %v after the crash: %v (before %v)", time.Since(crash).Round(time.Millisecond), count, before)
	gainA, gainB := count["a"]-before["a"], count["b"]-before["b"]
	if gainA < before["c"]/4 || gainB < before["c"]/4 {
		t.Errorf("c's %d workers went %d to a and %d to b: not spread", before["c"], gainA, gainB)
	}
	f.checkNoOverlap(t, ws)
}

// Drain: the drained node ends with no workers, the others absorb them, nothing overlaps;
// undrained, it gets its share back.
func TestDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("many workers")
	}
	srv := natstest.Run(t)
	ws := names(300)
	f := newFleet()
	nodes := startTogether(t, srv, ConfigForTTL(fleetTTL), func(n string) func(*Engine) { return f.register(ws, n) }, "a", "b", "c")
	waitFor(t, "balance", 60*time.Second, func() bool {
		c, n := f.perNode(t, ws)
		return n == len(ws) && balanced(c, n, stickyTol, "a", "b", "c")
	})
	start := time.Now()
	nodes[0].e.SetDraining(context.Background(), true)
	var count map[string]int
	var n int
	waitFor(t, "a drained", 60*time.Second, func() bool {
		count, n = f.perNode(t, ws)
		ok := n == len(ws) && count["a"] == 0 && balanced(count, n, stickyTol, "b", "c")
		if !ok && time.Since(start) > 55*time.Second {
			t.Logf("still: %v running %d, a owns %v", count, n, nodes[0].e.Owned())
		}
		return ok
	})
	t.Logf("drained in %v: %v", time.Since(start).Round(time.Millisecond), count)
	if got := nodes[0].e.Owned(); len(got) != 0 {
		t.Fatalf("a still owns %d workers", len(got))
	}
	nodes[0].e.SetDraining(context.Background(), false)
	waitFor(t, "a back in", 60*time.Second, func() bool {
		c, n := f.perNode(t, ws)
		return n == len(ws) && balanced(c, n, stickyTol, "a", "b", "c")
	})
	f.checkNoOverlap(t, ws)
}

func TestAssignmentIsBalancedAndWeighted(t *testing.T) {
	e := &Engine{node: "a", info: NodeInfo{Weight: 1}, workers: map[string]*worker{}, members: map[string]Member{}}
	for _, n := range names(1000) {
		e.workers[n] = nil
	}
	e.members["b"] = Member{NodeRecord: kv.NodeRecord{Node: "b", Capacity: 1}}
	e.members["c"] = Member{NodeRecord: kv.NodeRecord{Node: "c", Capacity: 2}}
	count := map[string]int{}
	for _, to := range e.planLocked().targets() {
		count[to]++
	}
	if count["a"] != 250 || count["b"] != 250 || count["c"] != 500 {
		t.Fatalf("weights 1:1:2 over 1,000 names gave %v", count)
	}
	// Adding a node moves only about a quarter of the names.
	before := e.planLocked().targets()
	e.members["d"] = Member{NodeRecord: kv.NodeRecord{Node: "d", Capacity: 2}}
	e.placementChanged()
	after := e.planLocked().targets()
	moved := 0
	for n, to := range before {
		if after[n] != to {
			moved++
		}
	}
	if moved > 450 {
		t.Fatalf("adding a node of weight 2 (1/3 of the total) moved %d of 1,000 names", moved)
	}
	t.Logf("moved %d of 1,000 names when a third of the capacity joined", moved)
}

// Nodes that expect each other wait for the others before claiming: a cluster that starts
// together spreads workers at once, with no rebalancing moves.
func TestExpectedMembersAvoidChurn(t *testing.T) {
	srv := natstest.Run(t)
	ws := names(60)
	f := newFleet()
	cfg := ConfigForTTL(fleetTTL)
	var nodes []*node
	for _, n := range []string{"a", "b", "c"} {
		nc := srv.Connect()
		st, err := kv.Open(context.Background(), nc, kv.Options{Namespace: "t"})
		if err != nil {
			t.Fatal(err)
		}
		e, err := New(st, n, cfg, WithLogger(quiet), WithExpectedMembers(3))
		if err != nil {
			t.Fatal(err)
		}
		f.register(ws, n)(e)
		t.Cleanup(func() { _ = e.Close() })
		if err := e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, &node{name: n, nc: nc, e: e})
	}
	waitFor(t, "all running, balanced", 30*time.Second, func() bool {
		c, n := f.perNode(t, ws)
		return n == len(ws) && balanced(c, n, stickyTol, "a", "b", "c")
	})
	for _, w := range ws {
		if l := f.of(w).snapshot(); len(l) != 1 {
			t.Errorf("%s started %d times: %+v", w, len(l), l)
		}
	}
}

// cluster is a simulated placement: names, their owners, and the candidate nodes.
type cluster struct {
	names  []string // sorted
	owners []string
	nodes  []candidate
}

func newCluster(n int, nodes ...string) *cluster {
	c := &cluster{names: names(n), owners: make([]string, n)}
	for _, x := range nodes {
		c.nodes = append(c.nodes, candidate{x, 1})
	}
	return c
}

// step places the names over the current nodes with plan (sticky or not) and moves every
// name to its target; it returns how many names changed owner (claims of unowned names
// included) and the loads after.
func (c *cluster) step(plan func(nodes []candidate, names, owners []string) map[string]string) (int, map[string]int) {
	sort.Slice(c.nodes, func(i, j int) bool { return c.nodes[i].node < c.nodes[j].node })
	target := plan(c.nodes, c.names, c.owners)
	moved := 0
	load := map[string]int{}
	for i, n := range c.names {
		if target[n] != c.owners[i] {
			moved++
			c.owners[i] = target[n]
		}
		load[c.owners[i]]++
	}
	return moved, load
}

func (c *cluster) leave(node string) {
	out := c.nodes[:0]
	for _, x := range c.nodes {
		if x.node != node {
			out = append(out, x)
		}
	}
	c.nodes = out
}

func (c *cluster) join(node string) { c.nodes = append(c.nodes, candidate{node, 1}) }

func sticky(threshold float64) func([]candidate, []string, []string) map[string]string {
	return func(nodes []candidate, names, owners []string) map[string]string {
		return placeNames(nodes, names, owners, nil, threshold).targets()
	}
}

func spread(load map[string]int) (lo, hi int) {
	lo = -1
	for _, l := range load {
		if lo < 0 || l < lo {
			lo = l
		}
		hi = max(hi, l)
	}
	return lo, hi
}

// Workers stay where they run: a leave moves only the leaving node's workers, a join moves
// what balance needs and ends near even, and a singleton or a small set stays put.
func TestPlanIsSticky(t *testing.T) {
	c := newCluster(1000, "a", "b", "c")
	if moved, load := c.step(sticky(0.1)); moved != 1000 || load["a"] < 330 || load["b"] < 330 || load["c"] < 330 {
		t.Fatalf("start: moved %d, loads %v", moved, load)
	}
	if moved, _ := c.step(sticky(0.1)); moved != 0 {
		t.Fatalf("the same membership moved %d names", moved)
	}
	onC := 0
	for _, o := range c.owners {
		if o == "c" {
			onC++
		}
	}
	c.leave("c")
	if moved, _ := c.step(sticky(0.1)); moved != onC {
		t.Fatalf("c left: moved %d names, c had %d", moved, onC)
	}
	c.join("c")
	moved, load := c.step(sticky(0.1))
	if lo, hi := spread(load); moved > 340 || hi-lo > 3 {
		t.Fatalf("c rejoined: moved %d, loads %v", moved, load)
	}
	c.join("d")
	moved, load = c.step(sticky(0.1))
	if lo, hi := spread(load); moved > 260 || float64(hi)/float64(lo) > 1.05 {
		t.Fatalf("d joined: moved %d, loads %v", moved, load)
	}
	t.Logf("d joined: moved %d, loads %v", moved, load)

	// A singleton: it stays on a when b and c come back.
	one := newCluster(1, "a")
	one.step(sticky(0.1))
	one.join("b")
	one.join("c")
	if moved, _ := one.step(sticky(0.1)); moved != 0 {
		t.Fatal("a singleton followed joining nodes")
	}
	// A small set: 3 workers, 2 on a and 1 on b after c restarted; c gets none back.
	small := newCluster(3, "a", "b")
	small.owners = []string{"a", "a", "b"}
	small.join("c")
	if moved, load := small.step(sticky(0.1)); moved != 0 {
		t.Fatalf("a small set followed a rejoining node: %v", load)
	}
	// Uneven beyond the threshold (a start-up where nodes came up one by one): every node
	// above its share comes down to it, not just the one past its slack.
	up := newCluster(300, "a", "b", "c")
	for i := range up.owners {
		switch { // a 150, b 110, c 40
		case i < 150:
			up.owners[i] = "a"
		case i < 260:
			up.owners[i] = "b"
		default:
			up.owners[i] = "c"
		}
	}
	if _, load := up.step(sticky(0.1)); load["a"] != 100 || load["b"] != 100 || load["c"] != 100 {
		t.Fatalf("150/110/40 became %v, want 100 each", load)
	}
	// Nodes placing the same inputs agree: the plan is a function of them.
	a := placeNames(c.nodes, c.names, c.owners, nil, 0.1).targets()
	b := placeNames(c.nodes, c.names, c.owners, nil, 0.1).targets()
	for n, to := range a {
		if b[n] != to {
			t.Fatalf("two plans of the same inputs differ for %s", n)
		}
	}
}

// Registering n names after the plan was used places O(n) names in all, not O(n²): the plan
// is recomputed once the names registered since are a tenth of it.
func TestRegisterPlacesAmortised(t *testing.T) {
	e := &Engine{node: "a", info: NodeInfo{Weight: 1}, workers: map[string]*worker{}, members: map[string]Member{}}
	noop := func(context.Context, *Lease) error { return nil }
	const n = 4000
	for _, name := range names(n) {
		if err := e.Register(name, noop); err != nil {
			t.Fatal(err)
		}
		if e.Preferred(name) != "a" { // each worker's loop asks, as it starts
			t.Fatalf("preferred for %s is not the only node", name)
		}
	}
	if got := e.placement.computed; got > 20*n {
		t.Fatalf("%d registrations placed %d names in all (want O(n), at most %d)", n, got, 20*n)
	}
	t.Logf("%d registrations placed %d names in all", n, e.placement.computed)
	// The digest is the same whatever the order of registration.
	f := &Engine{node: "a", info: NodeInfo{Weight: 1}, workers: map[string]*worker{}, members: map[string]Member{}}
	ns := names(n)
	for i := len(ns) - 1; i >= 0; i-- {
		_ = f.Register(ns[i], noop)
	}
	if e.namesDigest() != f.namesDigest() {
		t.Fatalf("digests differ: %s and %s", e.namesDigest(), f.namesDigest())
	}
	_ = f.Unregister(context.Background(), ns[0])
	if e.namesDigest() == f.namesDigest() {
		t.Fatal("digest did not change on Unregister")
	}
}

// A name a planned move took from a node is not planned back there while another node has
// room within its slack, and an over-share node keeps such names first (issue 14).
func TestPlanKeepsMovedNamesAway(t *testing.T) {
	nodes := []candidate{{"a", 1}, {"b", 1}, {"c", 1}}
	names := []string{"n0", "n1", "n2", "n3", "n4", "n5"}
	// a released all of its workers: c took three of them, b has its two. a is below its
	// share (2) by more than the slack (1): the plan must give it two — not from c's moved.
	owners := []string{"c", "c", "c", "b", "b", "c"}
	from := []string{"a", "a", "a", "", "", ""}
	p := placeNames(nodes, names, owners, from, 0.1)
	for i, n := range names {
		if from[i] == "a" && p.targets()[n] == "a" {
			t.Errorf("%s, moved from a, is planned back to a (plan %v)", n, p.targets())
		}
	}
	if p.load["a"] < 1 {
		t.Errorf("a gets %d workers (plan %v), want at least 1", p.load["a"], p.targets())
	}
	for node, l := range p.load {
		if s := p.share[node]; l < s-1 || l > s+1 {
			t.Errorf("%s: %d workers, share %d: outside the slack (plan %v)", node, l, s, p.targets())
		}
	}
	// Without from, the same owners send the names that score best on a back to it.
	back := placeNames(nodes, names, owners, nil, 0.1)
	if back.load["a"] < 1 {
		t.Fatalf("without from a gets nothing: %v", back.targets())
	}
}
