package ownership

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"
)

// Placement simulated past one machine, with the real placement code and no NATS:
//
//	go test -run '^$' -bench Simulate -benchtime 1x ./ownership
//
// prints, for 50 nodes × 100,000 workers and for a rolling restart of 3 nodes × 1,000
// workers, the moves per leave and per join, the max/min load after, and the store writes
// they imply, for this placement (sticky) and for the one before it (bounded-load rendezvous
// that ignores where workers run, "main").

// mainPlan is the placement before stickiness (up to 0de2e75): every name to the first node
// in its rendezvous order below its share, names in order, whoever owns them now.
func mainPlan(nodes []candidate, names, _ []string) map[string]string {
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
	type sc struct {
		node  string
		score float64
	}
	order := make([]sc, len(nodes))
	for _, name := range names {
		for i, n := range nodes {
			order[i] = sc{n.node, score(name, n.node, n.weight)}
		}
		sort.Slice(order, func(i, j int) bool { return order[i].score > order[j].score })
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

// simRow is one membership change of a simulation.
type simRow struct {
	scenario, change string
	moved            int
	lo, hi           int
	took             time.Duration // computing the plan once
}

func nodeNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("n%02d", i)
	}
	return out
}

// simulate runs start, a leave and a rejoin of each node in turn (up to restarts), a crash
// and a rejoin of each in turn, and a join of one new node, with plan. Without stickiness
// ("main") a crashed node's workers went to whichever survivor claimed first and were then
// moved to their preferred node; with it the plan's node takes them over first.
func simulate(scenario string, workers, nodes, restarts int, plan func([]candidate, []string, []string) map[string]string) []simRow {
	c := newCluster(workers, nodeNames(nodes)...)
	var rows []simRow
	step := func(change string, before int) {
		start := time.Now()
		moved, load := c.step(plan)
		lo, hi := spread(load)
		rows = append(rows, simRow{scenario, change, before + moved, lo, hi, time.Since(start)})
	}
	step("start", 0)
	for i := 0; i < restarts; i++ {
		n := c.nodes[i%len(c.nodes)].node
		c.leave(n)
		step("leave "+n, 0)
		c.join(n)
		step("join "+n, 0)
	}
	for i := 0; i < restarts; i++ {
		n := c.nodes[i%len(c.nodes)].node
		c.leave(n)
		first := 0
		if strings.HasSuffix(scenario, "main") {
			// Whoever claims first: a survivor picked by the name's hash, not by placement.
			for k, o := range c.owners {
				if o == n {
					c.owners[k] = c.nodes[int(mix(nameHash(c.names[k]))%uint64(len(c.nodes)))].node
					first++
				}
			}
		}
		step("crash "+n, first)
		c.join(n)
		step("rejoin "+n, 0)
	}
	c.join("new")
	step("join new", 0)
	return rows
}

func BenchmarkSimulate(b *testing.B) {
	cfg := DefaultConfig()
	for i := 0; i < b.N; i++ {
		var rows []simRow
		rows = append(rows, simulate("3×1,000 main", 1000, 3, 3, mainPlan)...)
		rows = append(rows, simulate("3×1,000 sticky", 1000, 3, 3, sticky(DefaultRebalanceThreshold))...)
		rows = append(rows, simulate("50×100,000 main", 100000, 50, 2, mainPlan)...)
		rows = append(rows, simulate("50×100,000 sticky", 100000, 50, 2, sticky(DefaultRebalanceThreshold))...)
		if i > 0 {
			continue
		}
		var out strings.Builder
		fmt.Fprintf(&out, "\n| placement | change | moves | min–max load | plan computed in |\n|---|---|---|---|---|\n")
		for _, r := range rows {
			fmt.Fprintf(&out, "| %s | %s | %d | %d–%d | %v |\n", r.scenario, r.change, r.moved, r.lo, r.hi, r.took.Round(time.Millisecond))
		}
		// Store writes: a move is a release (delete) and a claim (create); holding costs a
		// renewal per claim per RenewInterval today, or one per node with claims bound to
		// the node's lease.
		fmt.Fprintf(&out, "\nstore writes, 50 nodes × 100,000 workers, RenewInterval %v:\n", cfg.RenewInterval)
		fmt.Fprintf(&out, "- holding, one renewal per claim: %.0f/s; one per node lease: %.1f/s\n",
			100000/cfg.RenewInterval.Seconds(), 50/cfg.RenewInterval.Seconds())
		for _, r := range rows {
			if !strings.HasPrefix(r.scenario, "50×") || r.change == "start" {
				continue
			}
			// A rebalance hands over at most RebalanceRate per node per second; a leaving
			// node releases at its stop pace (1,000–4,000/s).
			secs := float64(r.moved) / (cfg.RebalanceRate * 50)
			if strings.HasPrefix(r.change, "crash") {
				continue // takeovers: a claim each, no release
			}
			if strings.HasPrefix(r.change, "leave") {
				secs = float64(r.moved) / 1000
			}
			fmt.Fprintf(&out, "- %s, %s: %d writes over ≥ %.1f s (≤ %.0f writes/s)\n", r.scenario, r.change, 2*r.moved, secs, 2*float64(r.moved)/max(secs, 1))
		}
		b.Log(out.String())
	}
}

// Rolling restarts of 3 nodes × 1,000 workers move each node's share out and back once with
// stickiness; without it (main) they move more.
func TestSimulateRollingRestart(t *testing.T) {
	total := func(rows []simRow) (leaves, joins int) {
		for _, r := range rows {
			switch {
			case strings.HasPrefix(r.change, "leave"), strings.HasPrefix(r.change, "crash"):
				leaves += r.moved
			case strings.HasPrefix(r.change, "join"), strings.HasPrefix(r.change, "rejoin"):
				joins += r.moved
			}
		}
		return leaves, joins
	}
	ml, mj := total(simulate("main", 1000, 3, 3, mainPlan))
	sl, sj := total(simulate("sticky", 1000, 3, 3, sticky(DefaultRebalanceThreshold)))
	t.Logf("3×1,000, restarts and crashes of each node, then a 4th node: moves on leaves and crashes %d (main %d), on joins %d (main %d)", sl, ml, sj, mj)
	if sl > 2010 || sl >= ml {
		t.Errorf("leaves and crashes moved %d workers (each node's third twice is about 2,000 in all; main %d)", sl, ml)
	}
	if sj > mj {
		t.Errorf("joins moved %d workers, main %d", sj, mj)
	}
}
