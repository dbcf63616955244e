package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// `jobs run NAME --wait` exits with the job's exit code, `jobs NAME` shows the run, `logs`
// shows the output of a worker and of a job, and a job's output is logged under job=.
func TestJobsWaitHistoryAndLogs(t *testing.T) {
	b := bins(t)
	dir := t.TempDir()
	cfg := "workers:\n  - name: talker\n    command: 'echo hello from $COORD_WORKER; exec sleep 300'\n" +
		"jobs:\n  - name: seven\n    schedule: \"0 0 1 1 *\"\n    command: 'echo job says hi; exit 7'\n"
	c, err := cluster.Start(t, cluster.Options{Nodes: 1, TTL: 2 * time.Second, Binaries: b, Dir: dir, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	n := c.Node(0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cmd := exec.CommandContext(ctx, b.Coordinator, "jobs", "run", "seven", "--wait", "--nats", n.ClientURL())
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("jobs run seven --wait: %v, want exit code 7\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "exit code 7") {
		t.Errorf("jobs run --wait printed %q", out.String())
	}

	hist, err := n.CLI(ctx, "jobs", "seven", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var runs []JobRun
	if err := json.Unmarshal(hist, &runs); err != nil {
		t.Fatalf("jobs seven --json: %v\n%s", err, hist)
	}
	if len(runs) != 1 || runs[0].Node != n.Name() || runs[0].ExitCode == nil || *runs[0].ExitCode != 7 ||
		runs[0].State != "failed" || runs[0].Duration == "" || !runs[0].Manual {
		t.Fatalf("jobs seven = %s", hist)
	}
	if text, err := n.CLI(ctx, "jobs", "seven"); err != nil || !strings.Contains(string(text), "failed") {
		t.Fatalf("jobs seven: %v\n%s", err, text)
	}

	waitUntil(t, "the worker's output in `logs`", func() bool {
		o, err := n.CLI(ctx, "logs", "talker")
		return err == nil && strings.Contains(string(o), "hello from talker")
	})
	if o, err := n.CLI(ctx, "logs", "--job", "seven"); err != nil || !strings.Contains(string(o), "job says hi") {
		t.Fatalf("logs --job seven: %v\n%s", err, o)
	}
	logb, _ := os.ReadFile(n.LogPath())
	for _, line := range bytes.Split(logb, []byte("\n")) {
		if bytes.Contains(line, []byte("job says hi")) && !bytes.Contains(line, []byte(`"job":"seven"`)) {
			t.Errorf("job output not logged under job=: %s", line)
		}
	}
}
