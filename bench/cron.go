package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// probeJobs finds out whether this coordinator build runs cron jobs: `coordinator check`
// must accept a config with a job and — since check only validates the file — one node
// must start with it. It returns "" when jobs work, else the reason.
func probeJobs(ctx context.Context, bins cluster.Binaries, dir string) string {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err.Error()
	}
	q := func(s string) string { j, _ := json.Marshal(s); return string(j) }
	cfg := fmt.Sprintf("workers: []\njobs:\n  - name: probe\n    schedule: \"@every 1s\"\n    command: [\"sh\", \"-c\", %s]\n",
		q("echo \"$COORD_JOB $COORD_TICK $COORD_NODE\" >> '"+filepath.Join(dir, ticksFile)+"'"))
	path := filepath.Join(dir, "check.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return err.Error()
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(cctx, bins.Coordinator, "check", "--config", path).CombinedOutput(); err != nil {
		return "`coordinator check` refuses a job: " + strings.TrimSpace(string(out))
	}
	c, err := cluster.New(cluster.Options{Nodes: 1, Config: cfg, Binaries: bins, Dir: dir, LogLevel: "info"})
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	n := c.Node(0)
	if err := n.Start(); err != nil {
		return err.Error()
	}
	if err := n.WaitReady(30 * time.Second); err != nil {
		if why := cluster.LastLogError(n.LogPath()); why != "" {
			return "`coordinator check` accepts jobs but `coordinator run` refuses them: " + why
		}
		return err.Error()
	}
	return ""
}

// parseTick reads COORD_TICK: unix seconds, or an RFC 3339 time.
func parseTick(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("COORD_TICK %q is neither unix seconds nor RFC 3339", s)
}

// cronDelays reads the ticks log ("job tick node start-ns") and returns, for the ticks
// scheduled at or after since, the delay from the scheduled time to the command's start.
func cronDelays(path string, since time.Time) ([]time.Duration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []time.Duration
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		tick, err := parseTick(f[1])
		if err != nil {
			return nil, err
		}
		ns, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("start stamp %q: %w", f[3], err)
		}
		if tick.Before(since) {
			continue
		}
		out = append(out, time.Unix(0, ns).Sub(tick))
	}
	return out, nil
}
