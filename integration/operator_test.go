package integration

import (
	"context"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// TestReleaseAndDrain: `coordinator release W` moves one worker off its owner, `coordinator
// drain NODE` every worker off a node, `drain --undo` lets it claim again; nothing ever
// runs twice.
func TestReleaseAndDrain(t *testing.T) {
	t.Parallel()
	names := []string{"a", "b", "c"}
	c := startCluster(t, cluster.Options{TTL: 2 * time.Second, Workers: recorded(names...)})
	settle(t, c, names...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	r1, _ := currentRun(c, "a")
	t0 := cluster.MonoNow()
	if out, err := c.Node(0).CLI(ctx, "release", "a"); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("release: %s", out)
	}
	r2, err := c.WaitRun("a", takeoverTimeout, func(r cluster.Run) bool { return r.Start > t0 })
	if err != nil {
		t.Fatal(err)
	}
	if r2.Node == r1.Node || r2.Token <= r1.Token {
		t.Errorf("after release: %v; before: %v", r2, r1)
	}
	t.Logf("release → running on %s: %s", r2.Node, ms(r2.Start.Sub(t0)))

	// Drain the node that runs the most.
	count := map[string]int{}
	for _, w := range names {
		r, _ := currentRun(c, w)
		count[r.Node]++
	}
	target := c.Node(0)
	for _, n := range c.Nodes() {
		if count[n.Name()] > count[target.Name()] {
			target = n
		}
	}
	t1 := cluster.MonoNow()
	if _, err := c.Node(1).CLI(ctx, "drain", target.Name()); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitFor(takeoverTimeout, "every worker off "+target.Name(), func() bool {
		for _, w := range names {
			r, ok := currentRun(c, w)
			if !ok || r.Node == target.Name() {
				return false
			}
		}
		st, err := c.Node(1).Status()
		if err != nil {
			return false
		}
		n, ok := st.Node(target.Name())
		return ok && n.Draining && n.Workers == 0
	}); err != nil {
		t.Error(err)
	}
	t.Logf("drain %s (%d workers) → all running elsewhere: %s", target.Name(), count[target.Name()], ms(cluster.MonoNow().Sub(t1)))

	if _, err := c.Node(2).CLI(ctx, "drain", "--undo", target.Name()); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitFor(takeoverTimeout, target.Name()+" to stop draining", func() bool {
		st, err := c.Node(0).Status()
		if err != nil {
			return false
		}
		n, ok := st.Node(target.Name())
		return ok && !n.Draining
	}); err != nil {
		t.Error(err)
	}
	observe(t, c, 2*c.TTL())
	checkRuns(t, c)
}
