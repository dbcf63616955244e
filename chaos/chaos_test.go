package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jetcoord/coordinator/internal/cluster"
	"github.com/jetcoord/coordinator/internal/config"
)

// These test the suite's own parts; the suite itself runs with `make chaos`.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPlannerIsReproducible(t *testing.T) {
	all := append(append([]string(nil), faultKinds...), opKinds...)
	for _, kinds := range [][]string{faultKinds, all} {
		a, b := newPlanner(42, 2*time.Second, 3, kinds), newPlanner(42, 2*time.Second, 3, kinds)
		count := map[string]int{}
		rounds := 4
		for i := 0; i < rounds*len(kinds); i++ {
			fa, fb := a.next(), b.next()
			if !reflect.DeepEqual(fa, fb) {
				t.Fatalf("fault %d differs for one seed: %+v vs %+v", i+1, fa, fb)
			}
			count[fa.Kind]++
			if fa.Kind == FaultPause && fa.Hold <= 2*time.Second {
				t.Errorf("pause of %v is not longer than the TTL", fa.Hold)
			}
			if (fa.Node < 0) != (fa.Kind == FaultLeader) || fa.Node > 2 {
				t.Errorf("fault %+v: bad node", fa)
			}
			if isOp(fa.Kind) != (fa.Count > 0) {
				t.Errorf("fault %+v: operator faults and only they target workers", fa)
			}
		}
		for _, k := range kinds {
			if count[k] != rounds {
				t.Errorf("%s planned %d times in %d faults, want %d", k, count[k], rounds*len(kinds), rounds)
			}
		}
		if c := newPlanner(43, 2*time.Second, 3, kinds).next(); reflect.DeepEqual(c, newPlanner(42, 2*time.Second, 3, kinds).next()) {
			t.Errorf("seeds 42 and 43 plan the same first fault %+v", c)
		}
	}
}

func TestPickWorkers(t *testing.T) {
	s := &suite{}
	for i := range 20 {
		s.workers = append(s.workers, fmt.Sprintf("w%02d", i))
	}
	s.cfg.Slow = slowWorkers(s.workers)
	if len(s.cfg.Slow) != 4 || !s.cfg.Slow["w02"] || !s.cfg.Slow["w17"] {
		t.Errorf("slow workers %v, want w02, w07, w12, w17", s.cfg.Slow)
	}
	f := Fault{Kind: FaultRelease, Pick: 7, Count: 5}
	a, b := s.pickWorkers(&f), s.pickWorkers(&f)
	if len(a) != 5 || !reflect.DeepEqual(a, b) {
		t.Errorf("picks %v and %v; want the same 5 workers for one Pick", a, b)
	}
	seen := map[string]bool{}
	for _, w := range a {
		if seen[w] {
			t.Errorf("%s picked twice in %v", w, a)
		}
		seen[w] = true
	}
	for pick := range uint64(20) {
		if w := s.pickWorkers(&Fault{Kind: FaultSlowStop, Pick: pick, Count: 1}); len(w) != 1 || !s.cfg.Slow[w[0]] {
			t.Errorf("slow-stop picked %v, not a slow worker", w)
		}
	}
	if w := s.pickWorkers(&Fault{Kind: FaultBucketDelete, Pick: 1, Count: 1}); w != nil {
		t.Errorf("bucket-delete picked %v", w)
	}
}

// TestSummaryCountsOverlapsByPlace: the summary tells overlaps on one node from those
// across nodes and counts faults per kind.
func TestSummaryCountsOverlapsByPlace(t *testing.T) {
	ms := cluster.Mono(time.Millisecond)
	run := func(node string, pid int, token uint64, start, end cluster.Mono) cluster.Run {
		return cluster.Run{Worker: "w00", Node: node, PID: pid, Token: token, Start: start * ms, End: end * ms, Stopped: true}
	}
	runs := []cluster.Run{
		run("n0", 1, 5, 0, 1000),
		run("n0", 2, 6, 800, 2000),  // 200 ms on one node, after #1
		run("n1", 3, 7, 1500, 3000), // 500 ms across nodes, after #2
		run("n2", 4, 1, 4000, 5000), // token back to 1
	}
	faults := []*Fault{
		{N: 1, Kind: FaultReload, NodeName: "n0", Start: 500 * ms, Healed: 600 * ms, Recovered: 700 * ms, Workers: []string{"w00"}},
		{N: 2, Kind: FaultKVDelete, NodeName: "n1", Start: 1400 * ms, Healed: 1400 * ms, Recovered: 1500 * ms, Workers: []string{"w00"}, Note: "claims hit: w00@9"},
		{N: 3, Kind: FaultKVDelete, NodeName: "n1", Start: 3500 * ms, Healed: 3500 * ms, Recovered: 3600 * ms, Err: errors.New("boom")},
	}
	res := &Result{Runs: runs, Violations: cluster.CheckRuns(runs), Gaps: gapsOf(runs),
		End: map[string]WorkerEnd{"w00": {Running: true, Node: "n2", Token: 1}}, ShutdownGrace: 3 * time.Second}
	if !res.Failed() {
		t.Fatal("a run with overlaps passed")
	}
	one, across := overlaps(res.Violations)
	if one.N != 1 || one.Longest != 200*time.Millisecond || across.N != 1 || across.Longest != 500*time.Millisecond {
		t.Errorf("one node %+v, across %+v", one, across)
	}
	var out strings.Builder
	res.print(&out, []string{"w00"}, faults, nil, "", func(time.Time) cluster.Mono { return 0 })
	got := strings.Join(strings.Fields(out.String()), " ") // the columns' padding aside
	for _, want := range []string{
		"on one node 1 (longest 200ms, total 200ms)",
		"across nodes 1 (longest 500ms, total 500ms)",
		"fencing tokens not increasing 1",
		"kv-del 2 1 1",
		"reload 1 0 1",
		"FAILED: boom",
		"claims hit: w00@9",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRewritePeers(t *testing.T) {
	m := map[string]string{"127.0.0.1:1": "127.77.0.1:1", "127.0.0.1:2": "127.77.0.2:2", "127.0.0.1:3": "127.77.0.3:3"}
	got := rewritePeers("127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", "127.0.0.1:2", m)
	if want := "127.77.0.1:1,127.0.0.1:2,127.77.0.3:3"; got != want {
		t.Errorf("rewritePeers = %q, want %q", got, want)
	}
	args := []string{"run", "--name", "n1", "--cluster-listen", "127.0.0.1:2", "--peers", "x"}
	if s := selfRoute(args); s != "127.0.0.1:2" {
		t.Errorf("selfRoute = %q", s)
	}
}

func TestConfigWithJobsIsValid(t *testing.T) {
	dir := t.TempDir()
	c := chaosConfig{Workers: []string{"w00", "w01"}, Recorder: "/bin/recorder", Dir: dir, Jobs: []string{"cron0"},
		Slow: map[string]bool{"w01": true}, StopDelay: 5 * time.Second, StopGrace: 10 * time.Second,
		ShutdownGrace: 3 * time.Second, Gen: map[string]int{"w00": 2}}
	y := c.YAML()
	f, err := config.Parse("chaos.yaml", []byte(y))
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	if len(f.Workers) != 2 || len(f.Jobs) != 1 || f.Jobs[0].Schedule != "@every 1s" || f.Jobs[0].RetryLost {
		t.Errorf("parsed %d workers, %d jobs: %+v", len(f.Workers), len(f.Jobs), f.Jobs)
	}
	if time.Duration(f.Timing.ShutdownGrace) != 3*time.Second {
		t.Errorf("shutdown_grace %v, want 3s", f.Timing.ShutdownGrace)
	}
	w0, w1 := f.Workers[0], f.Workers[1]
	if w0.Env["CHAOS_GEN"] != "2" || w0.Env["RECORDER_ON_OVERLAP"] != "run" || w0.Env["RECORDER_STOP_DELAY"] != "" {
		t.Errorf("w00 env %v", w0.Env)
	}
	if w1.Env["RECORDER_STOP_DELAY"] != "5s" || time.Duration(w1.StopGrace) != 10*time.Second {
		t.Errorf("slow w01: env %v, stop_grace %v", w1.Env, w1.StopGrace)
	}
	if _, err := config.Parse("chaos.yaml", []byte(chaosConfig{Recorder: "/bin/recorder", Dir: dir}.YAML())); err != nil {
		t.Error(err)
	}
}

func TestTicks(t *testing.T) {
	path := filepath.Join(t.TempDir(), TicksFile)
	data := "cron0 100 n0\ncron1 100 n1\ncron0 101 n1\ncron0 100 n2\ncron1 10"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	ticks, err := readTicks(path)
	if err != nil {
		t.Fatal(err)
	}
	r := checkTicks(ticks)
	if r.Total != 4 || r.PerJob["cron0"] != 2 || r.PerJob["cron1"] != 1 {
		t.Errorf("report %+v", r)
	}
	want := []DuplicateTick{{Job: "cron0", Tick: "100", Nodes: []string{"n0", "n2"}}}
	if !reflect.DeepEqual(r.Duplicates, want) {
		t.Errorf("duplicates %+v, want %+v", r.Duplicates, want)
	}
}

func TestGapsAndCause(t *testing.T) {
	runs := []cluster.Run{
		{Worker: "a", Node: "n0", Start: 0, End: 100},
		{Worker: "a", Node: "n1", Start: 150, End: 300},
		{Worker: "a", Node: "n1", Start: 250, End: 400}, // overlapping coverage: no gap
		{Worker: "a", Node: "n2", Start: 1000, End: 1100},
		{Worker: "b", Node: "n0", Start: 0, End: 5000},
	}
	g := gapsOf(runs)
	if len(g["a"]) != 2 || g["a"][0].Duration() != 50 || g["a"][1].From != 400 || g["a"][1].To != 1000 {
		t.Errorf("gaps of a: %+v", g["a"])
	}
	if len(g["b"]) != 0 {
		t.Errorf("gaps of b: %+v", g["b"])
	}
	faults := []*Fault{{N: 1, Kind: FaultKill, NodeName: "n0", Start: 90, Recovered: 200}, {N: 2, Kind: FaultPause, NodeName: "n1", Start: 380, Recovered: 600}}
	if c := cause(g["a"][0], faults); c != "during #1 kill n0" {
		t.Errorf("cause = %q", c)
	}
	if c := cause(g["a"][1], faults); c != "during #2 pause n1" {
		t.Errorf("cause = %q", c)
	}
	if c := cause(Gap{From: 700, To: 800}, faults); !strings.HasPrefix(c, "after #2 pause n1") {
		t.Errorf("cause = %q", c)
	}
	if c := cause(Gap{From: 10, To: 20}, faults); !strings.HasPrefix(c, "startup") {
		t.Errorf("cause = %q", c)
	}
}

// TestSocketInode finds this process's own connection in /proc/net/tcp.
func TestSocketInode(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	inode, err := socketInode(c.LocalAddr().(*net.TCPAddr), c.RemoteAddr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); l == "socket:["+inode+"]" {
			return
		}
	}
	t.Errorf("inode %s is not among this process's sockets", inode)
}

// TestRouteNetIsolate runs the grid in front of three plain TCP echo servers standing in
// for route listeners: traffic flows, a cut node's connections hold it back, a heal lets it
// through in order.
func TestRouteNetIsolate(t *testing.T) {
	c, err := cluster.New(cluster.Options{Dir: t.TempDir(), NoStart: true,
		Binaries: cluster.Binaries{Coordinator: "/nonexistent", Recorder: "/nonexistent", Reaper: "/nonexistent"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, n := range c.Nodes() {
		ln, err := net.Listen("tcp4", n.RouteAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { defer conn.Close(); _, _ = io.Copy(conn, conn) }()
			}
		}()
	}
	rn, err := newRouteNet(c.Nodes(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer rn.Close()

	conn, err := net.Dial("tcp4", rn.Addr(1))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	echo := func(msg string, within time.Duration) (string, error) {
		_ = conn.SetDeadline(time.Now().Add(within))
		if _, err := conn.Write([]byte(msg + "\n")); err != nil {
			return "", err
		}
		return r.ReadString('\n')
	}
	if got, err := echo("one", 5*time.Second); err != nil || got != "one\n" {
		t.Fatalf("through the grid: %q, %v", got, err)
	}
	rn.Isolate(1)
	if got, err := echo("two", 300*time.Millisecond); err == nil {
		t.Fatalf("node 1 is cut off, yet %q came back", got)
	}
	rn.Heal()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "two\n" {
		t.Fatalf("after heal: %q, %v", got, err)
	}
	open, unknown := rn.Stats()
	if open != 1 || unknown != 1 { // this test process is no node
		t.Errorf("Stats = %d open, %d unknown; want 1, 1", open, unknown)
	}
}
