package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetcoord/coordinator/internal/cluster"
	"github.com/jetcoord/coordinator/kv"
	"github.com/jetcoord/coordinator/ownership"
)

// status never calls a broken worker "running": a command that exits 3 on every start, a
// missing binary, a missing dir, and a claim naming a node that does not exist. A healthy
// worker shows as running, with its restarts and last exit; /metrics agrees.
func TestStatusTellsBrokenWorkers(t *testing.T) {
	b := bins(t)
	dir := t.TempDir()
	cfg := "workers:\n" +
		"  - name: healthy\n    command: [\"sleep\", \"300\"]\n" +
		"  - name: crashloop\n    command: [\"sh\", \"-c\", \"exit 3\"]\n" +
		"  - name: nobinary\n    command: [\"/nonexistent/coordinator-test-binary\"]\n" +
		"  - name: nodir\n    command: [\"sleep\", \"300\"]\n    dir: /nonexistent/coordinator-test-dir\n"
	c, err := cluster.Start(t, cluster.Options{Nodes: 1, TTL: 2 * time.Second, Binaries: b, Dir: dir, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	n := c.Node(0)

	// A claim by hand, naming a node that does not exist.
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := kv.Open(ctx, nc, kv.Options{Namespace: c.Namespace(), BindOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	orphan := kv.Claim{Worker: "orphan", Node: "ghost", Incarnation: "x", Acquired: now, Renewed: now,
		TTL: kv.Duration(time.Minute), State: kv.StateRunning}
	if _, err := st.Workers.Create(ctx, "orphan", orphan.Encode(), time.Minute); err != nil {
		t.Fatal(err)
	}

	broken := []string{"crashloop", "nobinary", "nodir", "orphan"}
	var last Status
	waitUntil(t, "healthy running and crashloop failing", func() bool {
		s, err := n.StatusCLI(ctx)
		if err != nil {
			t.Logf("status: %v", err)
			return false
		}
		last = s
		for _, name := range broken {
			if w, ok := s.Worker(name); ok && w.State == ownership.StateRunning {
				t.Fatalf("broken worker %s shows as running: %+v", name, w)
			}
		}
		h, _ := s.Worker("healthy")
		cl, _ := s.Worker("crashloop")
		return h.State == ownership.StateRunning && cl.State == ownership.StateFailing
	})
	want := map[string]string{"orphan": ownership.StateOwnerUnknown}
	for name, state := range want {
		if w, _ := last.Worker(name); w.State != state {
			t.Errorf("%s: state %q, want %q (%+v)", name, w.State, state, w)
		}
	}
	cl, _ := last.Worker("crashloop")
	if cl.Restarts < ownership.FailingAfter-1 || cl.LastExit == nil || cl.LastExit.Code == nil || *cl.LastExit.Code != 3 {
		t.Errorf("crashloop: restarts %d, last exit %+v; want restarts and code 3", cl.Restarts, cl.LastExit)
	}
	for _, name := range []string{"nobinary", "nodir"} {
		w, _ := last.Worker(name)
		if w.LastExit == nil || w.LastExit.Code != nil || w.LastExit.Error == "" {
			t.Errorf("%s: last exit %+v, want an error without a code", name, w.LastExit)
		}
	}

	out, err := n.CLI(ctx, "status")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("status:\n%s", out)
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[0] == "crashloop" || f[0] == "nobinary" || f[0] == "nodir" || f[0] == "orphan") && f[4] == "running" {
			t.Errorf("text status calls %s running: %q", f[0], line)
		}
	}
	if !strings.Contains(string(out), `node "ghost" is not a live member`) {
		t.Errorf("text status does not explain the orphan:\n%s", out)
	}

	m := scrape(t, n)
	if m["coordinator_worker_running,worker=healthy"] != 1 || m["coordinator_worker_running,worker=crashloop"] != 0 ||
		m["coordinator_worker_failing,worker=crashloop"] != 1 || m["coordinator_worker_restarts_total,worker=crashloop"] < 1 {
		t.Errorf("runtime metrics: %v", pick(m, "coordinator_worker_"))
	}

	// /status has the same shape and truth.
	var hs Status
	if err := getJSON("http://"+n.HTTPAddr()+"/status", &hs); err != nil {
		t.Fatal(err)
	}
	if w, _ := hs.Worker("crashloop"); w.State == ownership.StateRunning {
		t.Errorf("/status calls crashloop running: %+v", w)
	}

	// Drained, the only node holds nothing: its workers show as unclaimed, not missing.
	if out, err := n.CLI(ctx, "drain", n.Name()); err != nil {
		t.Fatalf("drain: %v %s", err, out)
	}
	waitUntil(t, "healthy unclaimed", func() bool {
		s, err := n.StatusCLI(ctx)
		if err != nil {
			return false
		}
		for _, w := range s.Workers {
			if w.Worker == "healthy" {
				return w.State == ownership.StateUnclaimed
			}
		}
		return false
	})
	if out, err := n.CLI(ctx, "status"); err != nil || !hasRow(string(out), "healthy", "unclaimed") {
		t.Errorf("text status after drain: %v\n%s", err, out)
	}
}

func pick(m map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// A node listening on every interface advertises its interface addresses, not 127.0.0.1.
func TestAdvertisedURLs(t *testing.T) {
	ifs := func() ([]net.Addr, error) {
		return []net.Addr{
			&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
			&net.IPNet{IP: net.ParseIP("10.1.2.3"), Mask: net.CIDRMask(24, 32)},
			&net.IPNet{IP: net.ParseIP("fe80::1"), Mask: net.CIDRMask(64, 128)},
			&net.IPNet{IP: net.ParseIP("2001:db8::5"), Mask: net.CIDRMask(64, 128)},
		}, nil
	}
	for _, c := range []struct {
		listen string
		want   string
	}{
		{"127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"0.0.0.0:4222", "nats://10.1.2.3:4222"},
		{"[::]:4222", "nats://10.1.2.3:4222,nats://[2001:db8::5]:4222"},
		{"10.9.9.9:4222", "nats://127.0.0.1:4222"}, // a specific address: what the server says
	} {
		if got := strings.Join(advertisedURLs("nats://127.0.0.1:4222", c.listen, ifs), ","); got != c.want {
			t.Errorf("listen %s: %s, want %s", c.listen, got, c.want)
		}
	}
}
