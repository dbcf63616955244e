package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jetcoord/coordinator/internal/cluster"
)

var bins cluster.Binaries

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "integration-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins, err = cluster.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		// Processes are the harness's business; goroutines of the test process must be gone.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// Generous bounds: the machine is shared with other test runs, and a three-node cluster
// needs up to ~9 s to elect a new stream leader on top of the lease TTL.
const (
	readyTimeout    = 90 * time.Second
	takeoverTimeout = 60 * time.Second
	goneTimeout     = 15 * time.Second
)

// startCluster starts a cluster with the binaries TestMain built and fails the test if
// it cannot.
func startCluster(t *testing.T, opts cluster.Options) *cluster.Cluster {
	t.Helper()
	opts.Binaries = bins
	c, err := cluster.Start(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func recorded(names ...string) []cluster.WorkerSpec {
	ws := make([]cluster.WorkerSpec, len(names))
	for i, n := range names {
		ws[i] = cluster.WorkerSpec{Name: n}
	}
	return ws
}

// checkRuns fails the test for every exactly-once violation in the cluster's runs so far
// and returns the runs.
func checkRuns(t *testing.T, c *cluster.Cluster) []cluster.Run {
	t.Helper()
	runs, err := c.Runs()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range cluster.CheckRuns(runs) {
		t.Errorf("%v", v)
	}
	return runs
}

// liveRun waits until worker has a run that is going on now (no stop line, a recent beat)
// and returns it.
func liveRun(t *testing.T, c *cluster.Cluster, worker string, timeout time.Duration) cluster.Run {
	t.Helper()
	r, err := c.WaitRun(worker, timeout, func(r cluster.Run) bool { return isLive(r) })
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// currentRun returns the latest run of worker if it is live now.
func currentRun(c *cluster.Cluster, worker string) (cluster.Run, bool) {
	runs, err := c.Runs()
	if err != nil {
		return cluster.Run{}, false
	}
	rs := cluster.RunsOf(runs, worker)
	if len(rs) == 0 || !isLive(rs[len(rs)-1]) {
		return cluster.Run{}, false
	}
	return rs[len(rs)-1], true
}

// isLive: no stop line and a beat (or the start) within the last second.
func isLive(r cluster.Run) bool {
	return !r.Stopped && cluster.MonoNow().Sub(r.End) < time.Second
}

// waitGone polls until pid is no live process.
func waitGone(t *testing.T, pid int, what string) time.Duration {
	t.Helper()
	t0 := time.Now()
	if err := cluster.WaitFor(goneTimeout, what+" to be gone", func() bool { return !cluster.Alive(pid) }); err != nil {
		t.Error(err)
	}
	return time.Since(t0)
}

// observe watches the cluster for d — an observation window, not synchronisation — and
// fails the test at the first violation.
func observe(t *testing.T, c *cluster.Cluster, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		runs, err := c.Runs()
		if err != nil {
			t.Fatal(err)
		}
		if vs := cluster.CheckRuns(runs); len(vs) > 0 {
			t.Fatalf("violations: %v", vs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

// summary is "median m, worst w over n" of ds.
func summary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return fmt.Sprintf("median %s, best %s, worst %s over %d", ms(s[len(s)/2]), ms(s[0]), ms(s[len(s)-1]), len(s))
}

// logRecords returns the JSON log records of a node whose msg is msg, in order.
func logRecords(t *testing.T, n *cluster.Node, msg string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(n.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	needle := []byte(`"msg":` + strconv.Quote(msg))
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), needle) {
			continue
		}
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

// runOf returns the run in runs that is r (same pid and start), with what is known now.
func runOf(runs []cluster.Run, r cluster.Run) cluster.Run {
	for _, x := range runs {
		if x.PID == r.PID && x.Start == r.Start && !x.Overlap {
			return x
		}
	}
	return r
}

// otherThan returns the first node of c that is not n.
func otherThan(c *cluster.Cluster, n *cluster.Node) *cluster.Node {
	for _, m := range c.Nodes() {
		if m != n {
			return m
		}
	}
	return nil
}

// readPids reads one pid from each file; it returns nil until all are there.
func readPids(files ...string) []int {
	var out []int
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil
		}
		pid, err := strconv.Atoi(string(bytes.TrimSpace(data)))
		if err != nil {
			return nil
		}
		out = append(out, pid)
	}
	return out
}
