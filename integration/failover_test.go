package integration

import (
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// TestColdStart: three nodes start from nothing and become ready; a worker registered on
// all three runs, one copy at a time, and once the cluster has formed it stays put.
//
// The first node to read the (empty) membership is the preferred node of every worker and
// claims at once; when the others join, placement may hand the worker to its new preferred
// node (gracefully: stop, release, start). So a cold start may show one handoff; the test
// logs it and checks that it was clean and that nothing moves afterwards.
func TestColdStart(t *testing.T) {
	t0 := cluster.MonoNow()
	c := startCluster(t, cluster.Options{TTL: 2 * time.Second, Workers: recorded("solo")})
	ready := cluster.MonoNow()
	t.Logf("3-node cold start to all /readyz 200: %s", ms(ready.Sub(t0)))

	first := liveRun(t, c, "solo", takeoverTimeout)
	t.Logf("cold start to the worker running: %s (on %s, token %d)", ms(first.Start.Sub(t0)), first.Node, first.Token)

	// Settled: the owner in the store is the node whose copy runs, and it stays so.
	settle(t, c, "solo")
	r, _ := currentRun(c, "solo")
	settled := cluster.MonoNow()
	observe(t, c, 3*c.TTL())

	runs := checkRuns(t, c)
	all := cluster.RunsOf(runs, "solo")
	var after []cluster.Run
	for _, x := range all {
		if x.Start > r.Start {
			after = append(after, x)
		}
		if x.Start < r.Start && !x.Stopped {
			t.Errorf("an earlier copy was killed, not stopped: %v", x)
		}
	}
	if len(after) > 0 {
		t.Errorf("the worker moved again after it settled at %d: %v", settled, after)
	}
	t.Logf("starts of solo during the cold start: %d (%v)", len(all), all)
	if len(all) > 1 {
		t.Logf("note: %d handoffs during the cold start: the first ready node claimed before the others had joined", len(all)-1)
	}
	for _, n := range c.Nodes() {
		if !n.Ready() {
			t.Errorf("%s not ready any more", n.Name())
		}
	}
}

// TestOwnerLoss: the owner of a worker goes away, three ways, on one cluster:
//
//   - kill: SIGKILL, with the workers stream led by another node. Another node runs the
//     worker, with a larger token, within the TTL plus a generous bound, and the killed
//     node's command is gone.
//   - kill_stream_leader: the same with the owner leading the workers stream, so that the
//     takeover also waits for a stream leader election.
//   - term: SIGTERM. The owner stops its command and releases the claim; the worker
//     moves almost at once.
func TestOwnerLoss(t *testing.T) {
	c := startCluster(t, cluster.Options{TTL: 2 * time.Second, Workers: recorded("w")})
	t.Run("kill", func(t *testing.T) { killOwner(t, c, false) })
	t.Run("kill_stream_leader", func(t *testing.T) { killOwner(t, c, true) })
	t.Run("term", func(t *testing.T) { termOwner(t, c) })
	checkRuns(t, c)
}

func killOwner(t *testing.T, c *cluster.Cluster, ownerLeads bool) {
	settle(t, c, "w")
	r1, _ := currentRun(c, "w")
	owner := c.NodeByName(r1.Node)
	leader := owner
	if !ownerLeads {
		leader = otherThan(c, owner)
	}
	if err := c.MoveStreamLeader(c.WorkersStream(), leader.Name(), time.Minute); err != nil {
		t.Fatal(err)
	}

	killed := cluster.MonoNow()
	if err := owner.Kill(); err != nil {
		t.Fatal(err)
	}
	gone := waitGone(t, r1.PID, "the killed node's recorder")
	r2, err := c.WaitRun("w", c.TTL()+takeoverTimeout, func(r cluster.Run) bool { return r.Start > killed })
	if err != nil {
		t.Fatal(err)
	}
	if r2.Node == owner.Name() {
		t.Errorf("the killed node %s runs the worker again", owner.Name())
	}
	if r2.Token <= r1.Token {
		t.Errorf("token %d after the takeover, %d before", r2.Token, r1.Token)
	}
	runs := checkRuns(t, c)
	old := runOf(runs, r1)
	t.Logf("TTL %v, owner leads the workers stream: %v: kill → running on %s: %s; kill → old command stopped: %s (stop line: %v, polled gone after %s)",
		c.TTL(), ownerLeads, r2.Node, ms(r2.Start.Sub(killed)), ms(old.End.Sub(killed)), old.Stopped, ms(gone))

	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	if err := owner.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
}

func termOwner(t *testing.T, c *cluster.Cluster) {
	settle(t, c, "w")
	r1, _ := currentRun(c, "w")
	owner := c.NodeByName(r1.Node)

	termed := cluster.MonoNow()
	st, err := owner.Term()
	if err != nil {
		t.Fatal(err)
	}
	exited := cluster.MonoNow()
	if st.Code != 0 {
		t.Errorf("%s exited with %v after SIGTERM, want 0", owner.Name(), st)
	}
	r2, err := c.WaitRun("w", takeoverTimeout, func(r cluster.Run) bool { return r.Start > termed })
	if err != nil {
		t.Fatal(err)
	}
	if r2.Node == owner.Name() || r2.Token <= r1.Token {
		t.Errorf("after SIGTERM: %v, before: %v", r2, r1)
	}
	old := runOf(checkRuns(t, c), r1)
	if !old.Stopped {
		t.Errorf("the old command has no stop line: it was killed, not stopped: %v", old)
	}
	t.Logf("SIGTERM → running on %s: %s (old command stopped after %s, coordinator exited after %s, gap %s)",
		r2.Node, ms(r2.Start.Sub(termed)), ms(old.End.Sub(termed)), ms(exited.Sub(termed)), ms(r2.Start.Sub(old.End)))
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	if err := owner.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
}

// TestCommandDiesWithCoordinator: a supervised command survives nothing. The coordinator
// is SIGKILLed; its commands are gone soon after — also one that ignores SIGTERM and
// leaves a grandchild in a new session behind.
func TestCommandDiesWithCoordinator(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stubborn := `trap "" TERM; setsid sleep 1000 & echo $! > ` + dir + `/grandchild; echo $$ > ` + dir + `/shell; while :; do sleep 0.1; done`
	c := startCluster(t, cluster.Options{Nodes: 1, TTL: 3 * time.Second, Workers: []cluster.WorkerSpec{
		{Name: "rec"},
		{Name: "stubborn", Command: []string{"/bin/sh", "-c", stubborn}},
	}})
	n := c.Node(0)
	r := liveRun(t, c, "rec", takeoverTimeout)
	var pids []int
	if err := cluster.WaitFor(30*time.Second, "the stubborn worker's pids", func() bool {
		pids = readPids(dir+"/grandchild", dir+"/shell")
		return len(pids) == 2
	}); err != nil {
		t.Fatal(err)
	}
	pids = append(pids, r.PID)
	before := n.Processes()
	if len(before) < 6 { // coordinator, 2 watchdogs, recorder, shell, grandchild (+ sleep 0.1)
		t.Errorf("only %d processes below the node: %v", len(before), before)
	}

	t0 := time.Now()
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitFor(goneTimeout, "every process of the killed node to be gone", func() bool {
		return len(n.Processes()) == 0
	}); err != nil {
		t.Errorf("%v: left %v", err, n.Processes())
	}
	all := time.Since(t0)
	for _, pid := range pids {
		if cluster.Alive(pid) {
			t.Errorf("pid %d outlived its coordinator", pid)
		}
	}
	runs := checkRuns(t, c)
	rec := cluster.RunsOf(runs, "rec")
	t.Logf("SIGKILL of the coordinator → all %d processes below it gone: %s (recorder stopped cleanly: %v)", len(before), ms(all), rec[len(rec)-1].Stopped)
}
