package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// These tests run the real daemon as an OS process through internal/cluster.

func bins(t *testing.T) cluster.Binaries {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	b, err := cluster.Build("")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func workerYAML(b cluster.Binaries, dir, name string, env string) string {
	return fmt.Sprintf("  - name: %s\n    command: [%q, %q]\n    env: {MARK: %q}\n", name, b.Recorder, dir, env)
}

func runsOf(t *testing.T, c *cluster.Cluster, worker string) []cluster.Run {
	t.Helper()
	all, err := c.Runs()
	if err != nil {
		t.Fatal(err)
	}
	return cluster.RunsOf(all, worker)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := cluster.WaitFor(60*time.Second, what, cond); err != nil {
		t.Fatal(err)
	}
}

// SIGHUP adds, removes and changes workers without touching the unchanged ones; an invalid
// file is rejected and the running config stays.
func TestReload(t *testing.T) {
	b := bins(t)
	dir := t.TempDir()
	cfg := func(ws ...string) string { return "workers:\n" + strings.Join(ws, "") }
	c, err := cluster.Start(t, cluster.Options{Nodes: 1, TTL: 2 * time.Second, Binaries: b, Dir: dir,
		Config: cfg(workerYAML(b, dir, "keep", "1"), workerYAML(b, dir, "gone", "1"), workerYAML(b, dir, "change", "1"))})
	if err != nil {
		t.Fatal(err)
	}
	n := c.Node(0)
	waitUntil(t, "three workers running", func() bool {
		return len(runsOf(t, c, "keep")) == 1 && len(runsOf(t, c, "gone")) == 1 && len(runsOf(t, c, "change")) == 1
	})
	write := func(s string) {
		if err := os.WriteFile(c.ConfigPath(), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := n.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	write(cfg(workerYAML(b, dir, "keep", "1"), workerYAML(b, dir, "change", "2"), workerYAML(b, dir, "new", "1")))
	waitUntil(t, "reload applied", func() bool {
		g, ch, nw := runsOf(t, c, "gone"), runsOf(t, c, "change"), runsOf(t, c, "new")
		return len(g) == 1 && g[0].Stopped && len(ch) == 2 && ch[0].Stopped && len(nw) == 1
	})
	if k := runsOf(t, c, "keep"); len(k) != 1 || k[0].Stopped {
		t.Fatalf("unchanged worker was touched: %+v", k)
	}
	// The removed worker's series are gone from /metrics; the others are there.
	m := scrape(t, n)
	if _, ok := m["coordinator_worker_running,worker=gone"]; ok {
		t.Errorf("/metrics still has the removed worker: %v", pick(m, "coordinator_worker_running"))
	}
	if _, ok := m["coordinator_worker_running,worker=keep"]; !ok {
		t.Errorf("/metrics lacks coordinator_worker_running for keep: %v", pick(m, "coordinator_worker_running"))
	}
	// A broken file is rejected; nothing changes.
	write("workers:\n  - name: keep\n    comand: [x]\n")
	waitUntil(t, "the rejection in the log", func() bool {
		b, _ := os.ReadFile(n.LogPath())
		return bytes.Contains(b, []byte("config rejected"))
	})
	for _, w := range []string{"keep", "new"} {
		if r := runsOf(t, c, w); len(r) != 1 || r[0].Stopped {
			t.Fatalf("%s touched by a rejected reload: %+v", w, r)
		}
	}
	// A setting that only applies at start is reported and keeps its running value.
	write("namespace: other\n" + cfg(workerYAML(b, dir, "keep", "1"), workerYAML(b, dir, "change", "2"), workerYAML(b, dir, "new", "1")))
	waitUntil(t, "the restart warning in the log", func() bool {
		b, _ := os.ReadFile(n.LogPath())
		return bytes.Contains(b, []byte("change only with a restart")) && bytes.Contains(b, []byte("namespace: coord → other"))
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if st, err := n.StatusCLI(ctx); err != nil || len(st.Workers) != 3 || st.Namespace != "coord" {
		t.Fatalf("after a namespace change in the file, status in the running namespace = %+v, %v", st, err)
	}
	for _, w := range []string{"keep", "new"} {
		if r := runsOf(t, c, w); len(r) != 1 || r[0].Stopped {
			t.Fatalf("%s touched by a reload that changed only the namespace: %+v", w, r)
		}
	}
	all, err := c.Runs()
	if err != nil {
		t.Fatal(err)
	}
	if v := cluster.CheckRuns(all); len(v) > 0 {
		t.Fatalf("violations: %v", v)
	}
}

func scrape(t *testing.T, n *cluster.Node) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				key += fmt.Sprintf(",%s=%s", l.GetName(), l.GetValue())
			}
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[key+",count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// /metrics parses as Prometheus text and its counters move when workers move; status and
// events have their documented JSON shapes.
func TestMetricsStatusEvents(t *testing.T) {
	b := bins(t)
	dir := t.TempDir()
	c, err := cluster.Start(t, cluster.Options{Nodes: 1, TTL: 2 * time.Second, Binaries: b, Dir: dir,
		Config: "workers:\n" + workerYAML(b, dir, "w1", "1") + workerYAML(b, dir, "w2", "1")})
	if err != nil {
		t.Fatal(err)
	}
	n := c.Node(0)
	waitUntil(t, "two workers owned and renewed", func() bool {
		m := scrape(t, n)
		return m["coordinator_workers_owned"] == 2 && m["coordinator_renewals_total,result=ok"] > 0
	})
	m := scrape(t, n)
	for _, k := range []string{"coordinator_claim_attempts_total,result=won", "coordinator_renew_latency_seconds,count",
		"coordinator_renewals_total,result=ok", "coordinator_events_published_total,kind=worker,type=claimed"} {
		if m[k] <= 0 {
			t.Errorf("metric %s = %v, want > 0", k, m[k])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := n.CLI(ctx, "release", "w1"); err != nil {
		t.Fatalf("release: %v %s", err, out)
	}
	waitUntil(t, "the handoff counted and w1 back", func() bool {
		m := scrape(t, n)
		return m["coordinator_handoffs_total"] == 1 && m["coordinator_workers_owned"] == 2
	})

	// A worker counts as running once it has been up for the start grace (1s).
	waitUntil(t, "w1 running again", func() bool {
		s, err := n.StatusCLI(ctx)
		w, _ := s.Worker("w1")
		return err == nil && w.State == "running"
	})
	out, err := n.CLI(ctx, "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	for _, k := range []string{"namespace", "time", "workers", "nodes"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("status --json lacks %q", k)
		}
	}
	var st Status
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("status --json does not match the Status type: %v", err)
	}
	if len(st.Workers) != 2 || st.Workers[0].Worker != "w1" || st.Workers[0].Node != n.Name() || st.Workers[0].Token == 0 ||
		st.Workers[0].State != "running" || len(st.Nodes) != 1 || st.Nodes[0].Workers != 2 {
		t.Fatalf("status = %+v", st)
	}

	out, err = n.CLI(ctx, "events", "--json", "--since", "10m")
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("events --json line %q: %v", sc.Text(), err)
		}
		for _, k := range []string{"id", "type", "kind", "time", "cluster", "node", "name"} {
			if _, ok := ev[k]; !ok {
				t.Fatalf("event %s lacks %q", sc.Text(), k)
			}
		}
		types[ev["kind"].(string)+"."+ev["type"].(string)] = true
	}
	for _, want := range []string{"node.joined", "worker.claimed", "worker.started", "worker.moved", "worker.released"} {
		if !types[want] {
			t.Errorf("events lack %s; got %v", want, types)
		}
	}
}

// check exits non-zero and lists every problem with its line.
func TestCheckCommand(t *testing.T) {
	b := bins(t)
	bad := t.TempDir() + "/bad.yaml"
	_ = os.WriteFile(bad, []byte("workers:\n  - name: a b\n    command: [x]\n  - name: ok\n    stop_grace: soon\n"), 0o644)
	out, err := exec.Command(b.Coordinator, "check", "--config", bad).CombinedOutput()
	if err == nil {
		t.Fatalf("check of a bad file exited 0:\n%s", out)
	}
	for _, want := range []string{"bad.yaml:2:", `invalid worker name "a b"`, "bad.yaml:5:", "stop_grace", "bad.yaml:4:", "command is missing"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	out, err = exec.Command(b.Coordinator, "check", "--config", "../../deploy/coordinator.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("check of the annotated example: %v\n%s", err, out)
	}
}
