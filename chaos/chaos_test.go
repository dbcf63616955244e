package main

import (
	"bufio"
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
	a, b := newPlanner(42, 2*time.Second, 3, faultKinds), newPlanner(42, 2*time.Second, 3, faultKinds)
	kinds := map[string]int{}
	for i := 0; i < 20; i++ {
		fa, fb := a.next(), b.next()
		if !reflect.DeepEqual(fa, fb) {
			t.Fatalf("fault %d differs for one seed: %+v vs %+v", i+1, fa, fb)
		}
		kinds[fa.Kind]++
		if fa.Kind == FaultPause && fa.Hold <= 2*time.Second {
			t.Errorf("pause of %v is not longer than the TTL", fa.Hold)
		}
		if (fa.Node < 0) != (fa.Kind == FaultLeader) || fa.Node > 2 {
			t.Errorf("fault %+v: bad node", fa)
		}
	}
	for _, k := range faultKinds {
		if kinds[k] != 4 { // 20 faults = 4 rounds of every kind
			t.Errorf("%s planned %d times in 20 faults, want 4", k, kinds[k])
		}
	}
	if c := newPlanner(43, 2*time.Second, 3, faultKinds).next(); reflect.DeepEqual(c, newPlanner(42, 2*time.Second, 3, faultKinds).next()) {
		t.Errorf("seeds 42 and 43 plan the same first fault %+v", c)
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
	y := configYAML([]string{"w00", "w01"}, "/bin/recorder", dir, []string{"cron0"})
	f, err := config.Parse("chaos.yaml", []byte(y))
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	if len(f.Workers) != 2 || len(f.Jobs) != 1 || f.Jobs[0].Schedule != "@every 1s" {
		t.Errorf("parsed %d workers, %d jobs: %+v", len(f.Workers), len(f.Jobs), f.Jobs)
	}
	if _, err := config.Parse("chaos.yaml", []byte(configYAML(nil, "/bin/recorder", dir, nil))); err != nil {
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
