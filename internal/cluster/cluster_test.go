package cluster

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSingleNode drives one embedded node through the harness: start, a recorded run,
// status, SIGKILL (the whole tree goes), restart, and Close.
func TestSingleNode(t *testing.T) {
	c, err := Start(t, Options{Nodes: 1, TTL: 2 * time.Second, Workers: []WorkerSpec{{Name: "w"}}})
	if err != nil {
		t.Fatal(err)
	}
	n := c.Node(0)
	r, err := c.WaitRun("w", 30*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Node != n.Name() || r.Token == 0 {
		t.Errorf("run %v", r)
	}
	owner, err := c.WaitOwner("w", 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if owner.Node != n.Name() || owner.Token != r.Token {
		t.Errorf("owner %+v, run %v", owner, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := n.StatusCLI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if w, ok := st.Worker("w"); !ok || w.Node != n.Name() {
		t.Errorf("status --json: %+v", st)
	}
	if len(n.Processes()) < 3 {
		t.Errorf("processes %v: want coordinator, watchdog and recorder", n.Processes())
	}

	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := WaitFor(10*time.Second, "the tree to be gone", func() bool { return len(n.Processes()) == 0 }); err != nil {
		t.Fatalf("%v: %v", err, n.Processes())
	}
	if Alive(r.PID) {
		t.Errorf("recorder %d outlived its coordinator", r.PID)
	}

	if err := n.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := n.WaitReady(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	r2, err := c.WaitRun("w", 30*time.Second, func(x Run) bool { return x.Start > r.Start })
	if err != nil {
		t.Fatal(err)
	}
	if r2.Token <= r.Token {
		t.Errorf("token after restart %d, before %d", r2.Token, r.Token)
	}
	if st, err := n.Term(); err != nil || st.Code != 0 {
		t.Errorf("term: %v %v", st, err)
	}
	runs, _ := c.Runs()
	if vs := CheckRuns(runs); len(vs) > 0 {
		t.Errorf("violations: %v", vs)
	}
	log, _ := os.ReadFile(n.LogPath())
	if !strings.Contains(string(log), `"msg":"coordinator running"`) {
		t.Errorf("log has no start line")
	}
}

// TestNewAndClose uses the cluster without a TB, as the chaos suite does.
func TestNewAndClose(t *testing.T) {
	c, err := New(Options{Nodes: 1, NoStart: true, Binaries: bins})
	if err != nil {
		t.Fatal(err)
	}
	dir := c.Dir()
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	pid := c.Node(0).PID()
	c.Close()
	c.Close()
	if Alive(pid) {
		t.Errorf("coordinator %d alive after Close", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("dir %s not removed: %v", dir, err)
	}
}
