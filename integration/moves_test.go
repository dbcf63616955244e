package integration

import (
	"context"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// quietWindow is how long the moves tests watch for a move that must not come: longer than
// a claim grace, the rebalance delay after a membership change and a few renewals at the
// tests' TTL of 2 s.
const quietWindow = 8 * time.Second

// startsSince returns the runs of worker that started after t0.
func startsSince(t *testing.T, c *cluster.Cluster, worker string, t0 cluster.Mono) []cluster.Run {
	t.Helper()
	runs, err := c.Runs()
	if err != nil {
		t.Fatal(err)
	}
	var out []cluster.Run
	for _, r := range runs {
		if r.Worker == worker && r.Start > t0 {
			out = append(out, r)
		}
	}
	return out
}

// TestReleaseMovesOnceAndStays (issue 14): `coordinator release W` moves W to another node
// and it stays there — no claim grace first, no move back to the releasing node.
func TestReleaseMovesOnceAndStays(t *testing.T) {
	t.Parallel()
	names := []string{"solo"}
	c := startCluster(t, cluster.Options{TTL: 2 * time.Second, Workers: recorded(names...)})
	settle(t, c, names...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r1, _ := currentRun(c, "solo")
	owner := c.NodeByName(r1.Node)
	t0 := cluster.MonoNow()
	if _, err := owner.CLI(ctx, "release", "solo"); err != nil {
		t.Fatal(err)
	}
	r2, err := c.WaitRun("solo", takeoverTimeout, func(r cluster.Run) bool { return r.Start > t0 })
	if err != nil {
		t.Fatal(err)
	}
	if r2.Node == r1.Node {
		t.Fatalf("released on %s, started again on %s", r1.Node, r2.Node)
	}
	t.Logf("release on %s → running on %s after %s", r1.Node, r2.Node, ms(r2.Start.Sub(t0)))
	// It stays: no further start within the window.
	deadline := time.Now().Add(quietWindow)
	for time.Now().Before(deadline) {
		if s := startsSince(t, c, "solo", r2.Start); len(s) > 0 {
			t.Fatalf("solo moved again after the release: %v (first move %v)", s, r2)
		}
		time.Sleep(100 * time.Millisecond) // observing a window, not synchronising
	}
}

// TestRestartedNodeMovesNothing (issue 14): after a node is SIGKILLed its workers run on the
// survivors; starting it again moves none of them. Three workers on three nodes: each node's
// share is one, within the default slack (RebalanceThreshold of a share, at least one
// worker), so the rejoining node pulls nothing back. A larger set does get the rejoining
// node's share back (six workers: one or two move) — the threshold's trade-off.
func TestRestartedNodeMovesNothing(t *testing.T) {
	t.Parallel()
	names := []string{"w1", "w2", "w3"}
	c := startCluster(t, cluster.Options{TTL: 2 * time.Second, Workers: recorded(names...)})
	settle(t, c, names...)
	victim := c.Node(0)
	// (the victim's own runs end with it)
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitFor(takeoverTimeout, "every worker running on a survivor", func() bool {
		for _, w := range names {
			r, ok := currentRun(c, w)
			if !ok || r.Node == victim.Name() {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	settle(t, c, names...)
	t1 := cluster.MonoNow()
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	if err := victim.WaitReady(takeoverTimeout); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(quietWindow)
	for time.Now().Before(deadline) {
		for _, w := range names {
			if s := startsSince(t, c, w, t1); len(s) > 0 {
				t.Fatalf("restarting %s moved %s: %v", victim.Name(), w, s)
			}
		}
		time.Sleep(100 * time.Millisecond) // observing a window, not synchronising
	}
}
