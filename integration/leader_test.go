package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// settle waits until every worker runs where the store says it is owned, in state running
// (not handing over), has stayed there for a TTL, and the cluster has been left alone for
// two TTLs: every running node joined over a TTL ago, and the harness has not started,
// stopped or resumed a node since (placement moves workers RebalanceDelay, 0.4 TTL, after a
// membership change, and a paused node's record expires a TTL after the pause).
func settle(t *testing.T, c *cluster.Cluster, workers ...string) {
	t.Helper()
	if err := cluster.WaitFor(2*takeoverTimeout, fmt.Sprintf("%v to settle", workers), func() bool {
		for _, w := range workers {
			r, ok := currentRun(c, w)
			if !ok || cluster.MonoNow().Sub(r.Start) < c.TTL() {
				return false
			}
			owner, err := c.Owner(w)
			if err != nil || owner.Node != r.Node || owner.Token != r.Token || owner.State != "running" {
				return false
			}
		}
		return cluster.MonoNow().Sub(c.LastAction()) > 2*c.TTL() && joinedBefore(c, c.TTL())
	}); err != nil {
		t.Fatal(err)
	}
}

// joinedBefore reports whether every running node is a live member and started more than
// d ago, as a ready node's /status says.
func joinedBefore(c *cluster.Cluster, d time.Duration) bool {
	running := 0
	var st cluster.Status
	var err error = cluster.ErrNotRunning
	for _, n := range c.Nodes() {
		if n.Running() && !n.Paused() {
			running++
			if err != nil {
				st, err = n.Status()
			}
		}
	}
	if err != nil || len(st.Nodes) != running {
		return false
	}
	for _, n := range st.Nodes {
		if time.Since(n.Started) < d {
			return false
		}
	}
	return true
}

// TestKillWorkersStreamLeader: SIGKILL the node that leads the workers' KV stream. With a
// 2s TTL the stream's re-election (seconds) outlasts every renew deadline, so workers
// pause; no copy may ever overlap another, and all come back.
func TestKillWorkersStreamLeader(t *testing.T) {
	names := []string{"w0", "w1", "w2", "w3", "w4", "w5"}
	c := startCluster(t, cluster.Options{TTL: 2 * time.Second, Workers: recorded(names...)})
	settle(t, c, names...)

	var leaderName string
	if err := cluster.WaitFor(30*time.Second, "a workers stream leader", func() bool {
		var err error
		leaderName, err = c.StreamLeader(c.WorkersStream())
		return err == nil
	}); err != nil {
		t.Fatal(err)
	}
	leader := c.NodeByName(leaderName)
	if leader == nil {
		t.Fatalf("stream leader %q is not a node", leaderName)
	}
	before := map[string]cluster.Run{}
	for _, w := range names {
		before[w], _ = currentRun(c, w)
	}

	killed, killedWall := cluster.MonoNow(), time.Now()
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitFor(c.TTL()+takeoverTimeout, "every worker to run again", func() bool {
		for _, w := range names {
			r, ok := currentRun(c, w)
			if !ok || r.Node == leaderName {
				return false
			}
		}
		return true
	}); err != nil {
		t.Error(err)
	}
	recovered := cluster.MonoNow()
	runs := checkRuns(t, c)
	gaps := cluster.Gaps(runs)
	moved, paused := 0, 0
	var longest time.Duration
	for _, w := range names {
		now, _ := currentRun(c, w)
		if now.Token != before[w].Token {
			moved++
		}
		if g := gaps[w]; g.Duration() > 0 && g.To > killed {
			paused++
			longest = max(longest, g.Duration())
		}
	}
	newLeader, elected := "none", time.Duration(0)
	msg := "JetStream cluster new stream leader for '$G > " + c.WorkersStream() + "'"
	for _, n := range c.Nodes() {
		if n == leader {
			continue
		}
		for _, rec := range logRecords(t, n, msg) {
			at, err := time.Parse(time.RFC3339Nano, rec["time"].(string))
			if err == nil && at.After(killedWall) && (elected == 0 || at.Sub(killedWall) < elected) {
				newLeader, elected = n.Name(), at.Sub(killedWall)
			}
		}
	}
	t.Logf("TTL %v, stream leader %s killed with %d workers: %s elected after %s (server log); all workers running again after %s; %d workers restarted with a new token, %d paused, longest pause %s",
		c.TTL(), leaderName, len(names), newLeader, ms(elected), ms(recovered.Sub(killed)), moved, paused, ms(longest))

	// The killed node comes back; everything stays exactly-once.
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	if err := leader.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	observe(t, c, 2*c.TTL())
	checkRuns(t, c)
}
