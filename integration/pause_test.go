package integration

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// TestPauseOwner: SIGSTOP the owner's coordinator for longer than the TTL, then SIGCONT.
// Another node takes over; the paused node's command was stopped by its watchdog before
// the new owner started it; after SIGCONT the paused node does not resume its stale term.
// The pause is repeated COORD_PAUSES times (default 3); every third pause is of a node
// that also leads the workers stream, so that the takeover waits for a new stream leader
// and the resumed node's server comes back as a stale leader.
//
// Placement may move the worker back to the resumed node later, gracefully (stop, release,
// new term with a larger token); the test allows that and checks it was clean.
func TestPauseOwner(t *testing.T) {
	pauses := 3
	if s := os.Getenv("COORD_PAUSES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("COORD_PAUSES=%q: want a positive number", s)
		}
		pauses = n
	}
	c := startCluster(t, cluster.Options{TTL: 2 * time.Second, Workers: recorded("w")})
	pauseOwner(t, c, pauses, func(i int) bool { return i%3 == 2 })
}

// pauseOwner pauses the node that runs w, pauses times; when leadStream(i), it first
// makes that node the leader of the workers stream.
func pauseOwner(t *testing.T, c *cluster.Cluster, pauses int, leadStream func(i int) bool) {
	t.Helper()
	var toStop, toStart, late []time.Duration
	for i := 0; i < pauses; i++ {
		settle(t, c, "w")
		r := liveRun(t, c, "w", takeoverTimeout)
		owner := c.NodeByName(r.Node)
		if leadStream(i) {
			if err := c.MoveStreamLeader(c.WorkersStream(), owner.Name(), time.Minute); err != nil {
				t.Fatal(err)
			}
			if now, ok := currentRun(c, "w"); !ok || now.PID != r.PID {
				t.Logf("the leader move disturbed w: %v", now)
				i--
				continue
			}
		}
		leader, _ := c.StreamLeader(c.WorkersStream())
		fencedBefore := len(logRecords(t, owner, "command fenced"))

		paused := cluster.MonoNow()
		if err := owner.Stop(); err != nil {
			t.Fatal(err)
		}
		r2, err := c.WaitRun("w", c.TTL()+takeoverTimeout, func(x cluster.Run) bool { return x.Start > paused })
		if err != nil {
			t.Fatalf("pause %d of %s: %v", i+1, owner.Name(), err)
		}
		if r2.Node == owner.Name() {
			t.Fatalf("pause %d: the paused node %s started the worker: %v", i+1, owner.Name(), r2)
		}
		// Paused for longer than the TTL in any case.
		if err := cluster.WaitFor(time.Minute, "the pause to outlast the TTL", func() bool {
			return cluster.MonoNow().Sub(paused) > c.TTL()+c.TTL()/2
		}); err != nil {
			t.Fatal(err)
		}
		if err := owner.Cont(); err != nil {
			t.Fatal(err)
		}
		resumed := cluster.MonoNow()

		runs := checkRuns(t, c)
		old := runOf(runs, r)
		if !old.Stopped {
			t.Errorf("pause %d: the paused node's command has no stop line (SIGKILLed at the fence, or still running): %v", i+1, old)
		}
		if old.End > r2.Start {
			t.Errorf("pause %d: old command ended at %d, after the new owner started at %d", i+1, old.End, r2.Start)
		}
		toStop = append(toStop, old.End.Sub(paused))
		toStart = append(toStart, r2.Start.Sub(paused))

		if err := owner.WaitReady(readyTimeout); err != nil {
			t.Fatal(err)
		}
		var exitLate time.Duration = -1
		if err := cluster.WaitFor(15*time.Second, owner.Name()+" to log the fence", func() bool {
			recs := logRecords(t, owner, "command fenced")
			if len(recs) <= fencedBefore {
				return false
			}
			if v, ok := recs[len(recs)-1]["exit_after_deadline"].(float64); ok {
				exitLate = time.Duration(v)
			}
			return true
		}); err != nil {
			t.Errorf("pause %d: %v", i+1, err)
		}
		if exitLate >= 0 {
			late = append(late, exitLate)
		}

		// The resumed node must not pick up its stale term. A later run there is a new
		// term (larger token) that began after the interim owner's copy stopped.
		observe(t, c, c.TTL())
		runs = checkRuns(t, c)
		for _, x := range cluster.RunsOf(runs, "w") {
			if x.Node == owner.Name() && x.Start > resumed && x.Token <= r2.Token {
				t.Errorf("pause %d: %s resumed with token %d, not above the interim owner's %d: %v", i+1, owner.Name(), x.Token, r2.Token, x)
			}
		}
		t.Logf("pause %d of %s (stream leader: %v): pause → command stopped %s, → running on %s %s, lease deadline → command exit %s",
			i+1, owner.Name(), leader == owner.Name(), ms(old.End.Sub(paused)), r2.Node, ms(r2.Start.Sub(paused)), ms(exitLate))
		if t.Failed() {
			break
		}
	}
	runs := checkRuns(t, c)
	t.Logf("TTL %v, %d pauses: pause → old command stopped: %s", c.TTL(), pauses, summary(toStop))
	t.Logf("pause → running elsewhere: %s", summary(toStart))
	t.Logf("lease deadline → command exit (watchdog, from the coordinator log): %s", summary(late))
	t.Logf("overlaps: %d (violations of any kind: %d)", countKind(cluster.CheckRuns(runs), cluster.ViolationOverlap, cluster.ViolationLock), len(cluster.CheckRuns(runs)))
}

func countKind(vs []cluster.Violation, kinds ...string) int {
	n := 0
	for _, v := range vs {
		for _, k := range kinds {
			if v.Kind == k {
				n++
			}
		}
	}
	return n
}

// TestPauseStubbornOwner: as TestPauseOwner with a command that ignores SIGTERM: the
// paused node's watchdog must SIGKILL it FenceGrace after the lease deadline, still
// before the new owner starts its copy (the recorder's lock proves it exactly).
func TestPauseStubbornOwner(t *testing.T) {
	c := startCluster(t, cluster.Options{TTL: 2 * time.Second, Workers: []cluster.WorkerSpec{
		{Name: "w", Env: map[string]string{"RECORDER_IGNORE_STOP": "1"}, StopGrace: time.Second},
	}})
	var margins []time.Duration
	for i := 0; i < 2; i++ {
		settle(t, c, "w")
		r, _ := currentRun(c, "w")
		owner := c.NodeByName(r.Node)
		fencedBefore := len(logRecords(t, owner, "command fenced"))
		paused := cluster.MonoNow()
		if err := owner.Stop(); err != nil {
			t.Fatal(err)
		}
		r2, err := c.WaitRun("w", c.TTL()+takeoverTimeout, func(x cluster.Run) bool { return x.Start > paused })
		if err != nil {
			t.Fatal(err)
		}
		if err := owner.Cont(); err != nil {
			t.Fatal(err)
		}
		gone := !cluster.Alive(r.PID)
		old := runOf(checkRuns(t, c), r)
		if !gone {
			t.Errorf("pause %d: the stubborn command %d still ran after the new owner started", i+1, r.PID)
		}
		if err := owner.WaitReady(readyTimeout); err != nil {
			t.Fatal(err)
		}
		var rec map[string]any
		if err := cluster.WaitFor(15*time.Second, owner.Name()+" to log the fence", func() bool {
			recs := logRecords(t, owner, "command fenced")
			if len(recs) > fencedBefore {
				rec = recs[len(recs)-1]
				return true
			}
			return false
		}); err != nil {
			t.Error(err)
		}
		late, _ := rec["exit_after_deadline"].(float64)
		killed, _ := rec["killed"].(bool)
		if !killed {
			t.Errorf("pause %d: fence record %v: want killed", i+1, rec)
		}
		if old.Stopped {
			t.Errorf("pause %d: the command that ignores SIGTERM wrote a stop line: %v", i+1, old)
		}
		margins = append(margins, r2.Start.Sub(old.LastBeat))
		t.Logf("pause %d of %s: lease deadline → SIGKILLed command gone %s; its last beat → new start on %s: %s",
			i+1, owner.Name(), ms(time.Duration(late)), r2.Node, ms(r2.Start.Sub(old.LastBeat)))
	}
	t.Logf("TTL %v: the SIGKILLed copy's last beat → the new copy's start: %s", c.TTL(), summary(margins))
}

// TestResumedNodeNoFalseNameClash: a node paused for longer than the TTL loses its
// membership record (it expires) and writes a new one when it resumes. That is not two
// processes sharing a node name, and must not be reported as one: it used to log at
// ERROR "this node's membership record was written by someone else: is another process
// using the same node name?", sending the operator after a configuration mistake that
// does not exist, because the kv.ErrConflict of an Update on an expired key was taken for a
// foreign write.
func TestResumedNodeNoFalseNameClash(t *testing.T) {
	t.Parallel()
	c := startCluster(t, cluster.Options{TTL: 2 * time.Second, LogLevel: "info"})
	n := c.Node(0)
	paused := cluster.MonoNow()
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitFor(takeoverTimeout, n.Name()+"'s membership to expire", func() bool {
		st, err := c.Node(1).Status()
		if err != nil {
			return false
		}
		_, live := st.Node(n.Name())
		return !live
	}); err != nil {
		t.Fatal(err)
	}
	expired := cluster.MonoNow()
	if err := n.Cont(); err != nil {
		t.Fatal(err)
	}
	if err := n.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	t.Logf("pause → membership gone from n1's view: %s; resume → ready: %s", ms(expired.Sub(paused)), ms(cluster.MonoNow().Sub(expired)))
	const clash = "this node's membership record was written by someone else: is another process using the same node name?"
	if err := cluster.WaitFor(2*c.TTL(), "the resumed node's log", func() bool { return len(logRecords(t, n, clash)) > 0 }); err == nil {
		t.Errorf("%s, paused past its TTL and resumed, logged at ERROR %q; no other process uses its name (its record had expired)", n.Name(), clash)
	}
}
