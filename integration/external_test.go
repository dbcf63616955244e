package integration

import (
	"net/url"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// startNATS starts the "existing NATS deployment" of the external-mode tests: three
// coordinator processes with no workers, in their own namespace, whose embedded servers
// form a JetStream cluster.
func startNATS(t *testing.T) *cluster.Cluster {
	t.Helper()
	return startCluster(t, cluster.Options{NamePrefix: "nats", Namespace: "infra", TTL: 5 * time.Second, LogLevel: "info"})
}

func hostPort(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Host
}

// TestExternalNATS: three coordinators join an existing 3-server NATS cluster (--nats);
// a worker runs once; when its owner is killed it moves, with a larger token.
func TestExternalNATS(t *testing.T) {
	t.Parallel()
	nats := startNATS(t)
	c := startCluster(t, cluster.Options{TTL: 2 * time.Second, Workers: recorded("w"),
		NATS: []string{nats.ClientURL(0), nats.ClientURL(1), nats.ClientURL(2)}})
	settle(t, c, "w")
	runs := checkRuns(t, c)
	t.Logf("starts of w until settled: %d", len(cluster.RunsOf(runs, "w")))

	r1, _ := currentRun(c, "w")
	owner := c.NodeByName(r1.Node)
	killed := cluster.MonoNow()
	if err := owner.Kill(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, r1.PID, "the killed node's recorder")
	r2, err := c.WaitRun("w", c.TTL()+takeoverTimeout, func(r cluster.Run) bool { return r.Start > killed })
	if err != nil {
		t.Fatal(err)
	}
	if r2.Node == owner.Name() || r2.Token <= r1.Token {
		t.Errorf("after the kill: %v; before: %v", r2, r1)
	}
	checkRuns(t, c)
	t.Logf("external mode, TTL %v: kill → running on %s: %s", c.TTL(), r2.Node, ms(r2.Start.Sub(killed)))
}

// TestExternalCutOff: a coordinator whose connection to NATS goes silent (a partition:
// its TCP connection stays open, nothing gets through) stops its worker at the renew
// deadline; another node takes over; when the partition heals, the cut-off node rejoins
// and nothing runs twice.
func TestExternalCutOff(t *testing.T) {
	t.Parallel()
	nats := startNATS(t)
	// Every coordinator reaches its server through a proxy, so whichever owns the worker
	// can be cut off alone.
	proxies := make([]*cluster.Proxy, 3)
	urls := make([]string, 3)
	for i := range proxies {
		p, err := cluster.NewProxy(hostPort(t, nats.ClientURL(i)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		proxies[i], urls[i] = p, p.URL()
	}
	c := startCluster(t, cluster.Options{TTL: 2 * time.Second, Workers: recorded("w"), NATS: urls})
	settle(t, c, "w")
	r1, _ := currentRun(c, "w")
	owner := c.NodeByName(r1.Node)
	proxy := proxies[owner.Index()]

	blocked := cluster.MonoNow()
	proxy.Block()
	r2, err := c.WaitRun("w", c.TTL()+takeoverTimeout, func(r cluster.Run) bool { return r.Start > blocked })
	if err != nil {
		t.Fatal(err)
	}
	runs := checkRuns(t, c)
	old := runOf(runs, r1)
	if r2.Node == owner.Name() || r2.Token <= r1.Token {
		t.Errorf("after the cut: %v; before: %v", r2, r1)
	}
	if !old.Stopped || old.End > r2.Start {
		t.Errorf("the cut-off node's command did not stop before the takeover: %v, new %v", old, r2)
	}
	if !owner.Running() {
		t.Errorf("the cut-off coordinator exited")
	}
	t.Logf("cut off from NATS → command stopped: %s (renew deadline %v), → running on %s: %s",
		ms(old.End.Sub(blocked)), c.TTL()*4/5, r2.Node, ms(r2.Start.Sub(blocked)))

	// Stay cut off a while longer: nothing may happen on the cut-off node.
	observe(t, c, c.TTL())
	healed := cluster.MonoNow()
	proxy.Unblock()
	if err := owner.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	t.Logf("partition healed → %s ready again: %s", owner.Name(), ms(cluster.MonoNow().Sub(healed)))
	observe(t, c, 3*c.TTL())
	runs = checkRuns(t, c)
	for _, x := range cluster.RunsOf(runs, "w") {
		if x.Node == owner.Name() && x.Start > blocked && x.Token <= r2.Token {
			t.Errorf("%s ran the worker with a stale token %d (interim owner's token %d): %v", owner.Name(), x.Token, r2.Token, x)
		}
	}
	if _, ok := currentRun(c, "w"); !ok {
		t.Errorf("w does not run after the partition healed")
	}
}

// TestExternalStoreSurvivesServerLoss: in external mode against a 3-server JetStream
// cluster, losing the one server that leads the workers bucket's stream must not stop the
// cluster for good: the bucket should be replicated (as in embedded mode, R3) and the
// worker should run again within the TTL plus a leader election.
func TestExternalStoreSurvivesServerLoss(t *testing.T) {
	t.Parallel()
	nats := startNATS(t)
	c := startCluster(t, cluster.Options{TTL: 2 * time.Second, Workers: recorded("w"),
		NATS: []string{nats.ClientURL(0), nats.ClientURL(1), nats.ClientURL(2)}})
	settle(t, c, "w")
	info, err := c.StreamInfo(c.WorkersStream())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas < 3 {
		t.Errorf("the workers bucket has %d replica(s) on a 3-server JetStream cluster: losing its server loses the store", info.Config.Replicas)
	}
	leaderName := ""
	if info.Cluster != nil {
		leaderName = info.Cluster.Leader
	}
	server := nats.NodeByName(leaderName)
	if server == nil {
		t.Fatalf("stream leader %q is not one of the NATS servers", leaderName)
	}
	killed := cluster.MonoNow()
	if err := server.Kill(); err != nil {
		t.Fatal(err)
	}
	err = cluster.WaitFor(c.TTL()+30*time.Second, "w to run after the loss of a NATS server", func() bool {
		r, ok := currentRun(c, "w")
		return ok && cluster.MonoNow().Sub(r.End) < time.Second && (r.Start > killed || cluster.MonoNow().Sub(killed) > 3*c.TTL())
	})
	if err != nil {
		t.Errorf("%v: the cluster cannot run its worker while one of three NATS servers is down", err)
	} else {
		r, _ := currentRun(c, "w")
		t.Logf("NATS server %s (workers stream leader) killed → w running (%s, token %d) after %s", leaderName, r.Node, r.Token, ms(cluster.MonoNow().Sub(killed)))
	}
	checkRuns(t, c)
}
