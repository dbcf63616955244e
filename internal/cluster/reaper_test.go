package cluster

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReaperKillsTheTree runs a shell that leaves a background child and an orphan in a
// new session behind, and checks that quit kills and reaps them all.
func TestReaperKillsTheTree(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pids")
	script := "sleep 300 & echo $! >> " + pidFile + "; " +
		"(setsid sh -c 'echo $$ >> " + pidFile + "; exec sleep 300' &); " +
		"exec sleep 300"
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	p, err := startProcess(bins.Reaper, []string{"/bin/sh", "-c", script}, os.Environ(), logf)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	if err := WaitFor(10*time.Second, "two pids", func() bool {
		data, _ := os.ReadFile(pidFile)
		pids = pids[:0]
		for _, f := range strings.Fields(string(data)) {
			n, _ := strconv.Atoi(f)
			pids = append(pids, n)
		}
		return len(pids) == 2
	}); err != nil {
		t.Fatal(err)
	}
	pids = append(pids, p.pid)
	for _, pid := range pids {
		if !Alive(pid) {
			t.Fatalf("pid %d not alive", pid)
		}
	}
	if d := p.descendants(); len(d) < 3 {
		t.Errorf("descendants %v, want at least %v", d, pids)
	}

	if err := p.quit(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if p.running() {
		t.Error("still running after quit")
	}
	if p.status.Signal != syscall.SIGKILL {
		t.Errorf("status %v, want killed by SIGKILL", p.status)
	}
	for _, pid := range pids {
		if Alive(pid) {
			t.Errorf("pid %d survived", pid)
		}
	}
}

func TestReaperReportsExit(t *testing.T) {
	logf, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	p, err := startProcess(bins.Reaper, []string{"/bin/sh", "-c", "exit 7"}, os.Environ(), logf)
	if err != nil {
		t.Fatal(err)
	}
	defer p.quit(5 * time.Second)
	st, err := p.wait(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != 7 || st.Signal != 0 {
		t.Errorf("status %v, want exit 7", st)
	}
	// Ended but not reaped: signalling the pid is refused by the harness, not sent to a
	// stranger.
	if err := p.signal(syscall.SIGTERM); err != ErrNotRunning {
		t.Errorf("signal after exit: %v, want ErrNotRunning", err)
	}
}
