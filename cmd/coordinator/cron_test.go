package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// A job every second on three nodes, one node killed and another paused past the TTL along
// the way: every tick runs at most once, also when the paused node resumes.
func TestCronExactlyOnceAcrossFaults(t *testing.T) {
	b := bins(t)
	dir := t.TempDir()
	ticks := filepath.Join(dir, "ticks.log")
	cfg := fmt.Sprintf("jobs:\n  - name: every-second\n    schedule: \"@every 1s\"\n    command: 'echo \"$COORD_JOB $COORD_TICK $COORD_NODE $COORD_TOKEN\" >> %s'\n", ticks)
	c, err := cluster.Start(t, cluster.Options{Nodes: 3, TTL: 2 * time.Second, Binaries: b, Dir: dir, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	read := func() map[string][]string {
		f, err := os.Open(ticks)
		if err != nil {
			return nil
		}
		defer f.Close()
		out := map[string][]string{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) == 4 {
				out[fs[1]] = append(out[fs[1]], fs[2])
			}
		}
		return out
	}
	waitN := func(n int) {
		t.Helper()
		start := len(read())
		if err := cluster.WaitFor(60*time.Second, fmt.Sprintf("%d more ticks", n), func() bool { return len(read()) >= start+n }); err != nil {
			t.Fatal(err)
		}
	}
	waitN(5)
	// Kill the node that ran the latest tick.
	last := func() string {
		var best, node string
		for tick, nodes := range read() {
			if tick > best {
				best, node = tick, nodes[0]
			}
		}
		return node
	}
	killed := c.NodeByName(last())
	if err := killed.Kill(); err != nil {
		t.Fatal(err)
	}
	waitN(5)
	// Pause another one past the TTL, then resume it.
	var paused *cluster.Node
	for _, n := range c.Nodes() {
		if n != killed {
			paused = n
			break
		}
	}
	if err := paused.Stop(); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	if err := cluster.WaitFor(30*time.Second, "3 TTLs to pass", func() bool { return time.Since(stoppedAt) > 3*c.TTL() }); err != nil {
		t.Fatal(err)
	}
	if err := paused.Cont(); err != nil {
		t.Fatal(err)
	}
	if err := killed.Restart(); err != nil {
		t.Fatal(err)
	}
	waitN(8)
	got := read()
	for tick, nodes := range got {
		if len(nodes) > 1 {
			t.Errorf("tick %s ran %d times, on %v", tick, len(nodes), nodes)
		}
	}
	t.Logf("%d ticks ran, each once", len(got))
}
