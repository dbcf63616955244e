package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// TicksFile is the log the cron jobs' commands append to, in the cluster's directory.
const TicksFile = "ticks.log"

// tickCommand appends "$COORD_JOB $COORD_TICK $COORD_NODE" to path. A write of one short
// line to a file opened with O_APPEND is atomic, so concurrent runs never interleave.
func tickCommand(path string) []string {
	return []string{"sh", "-c", `echo "$COORD_JOB $COORD_TICK $COORD_NODE" >> ` + shellQuote(path)}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// chaosConfig is the config file every node runs with: the workers (each running the
// recorder) and, if any, the per-second cron jobs. The operator faults rewrite it.
type chaosConfig struct {
	Workers  []string
	Recorder string
	Dir      string // the cluster's directory: runs.log, ticks.log
	Jobs     []string
	// Slow workers trap their stop signal and stop only StopDelay later, past
	// ShutdownGrace; their StopGrace (before SIGKILL) is longer still. Zero durations are
	// left out of the file.
	Slow          map[string]bool
	StopDelay     time.Duration
	StopGrace     time.Duration
	ShutdownGrace time.Duration
	// Gen is each worker's reload generation, in its environment as CHAOS_GEN: a reload
	// fault raises it, so that the node sees a changed worker.
	Gen map[string]int
}

// YAML renders the config file.
func (c chaosConfig) YAML() string {
	var b strings.Builder
	q := func(s string) string { j, _ := json.Marshal(s); return string(j) }
	list := func(ss []string) string {
		parts := make([]string, len(ss))
		for i, s := range ss {
			parts[i] = q(s)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	if c.ShutdownGrace > 0 {
		fmt.Fprintf(&b, "timing:\n  shutdown_grace: %s\n", c.ShutdownGrace)
	}
	if len(c.Workers) == 0 {
		b.WriteString("workers: []\n")
	} else {
		b.WriteString("workers:\n")
	}
	for _, w := range c.Workers {
		fmt.Fprintf(&b, "  - name: %s\n    command: %s\n", q(w), list([]string{c.Recorder, c.Dir}))
		// A copy that finds another one running records the overlap and runs on, as a
		// real second copy would.
		fmt.Fprintf(&b, "    env:\n      RECORDER_ON_OVERLAP: run\n")
		if g := c.Gen[w]; g > 0 {
			fmt.Fprintf(&b, "      CHAOS_GEN: \"%d\"\n", g)
		}
		if c.Slow[w] {
			if c.StopDelay > 0 {
				fmt.Fprintf(&b, "      RECORDER_STOP_DELAY: %s\n", c.StopDelay)
			}
			if c.StopGrace > 0 {
				fmt.Fprintf(&b, "    stop_grace: %s\n", c.StopGrace)
			}
		}
	}
	if len(c.Jobs) > 0 {
		b.WriteString("jobs:\n")
	}
	for _, j := range c.Jobs {
		// retry_lost stays off: a tick that ran twice is then always a violation.
		fmt.Fprintf(&b, "  - name: %s\n    schedule: \"@every 1s\"\n    retry_lost: false\n    command: %s\n", q(j), list(tickCommand(filepath.Join(c.Dir, TicksFile))))
	}
	return b.String()
}

// Tick is one line of the ticks log: a run of a job's tick on a node.
type Tick struct {
	Job, Tick, Node string
}

// readTicks parses the ticks log. A missing file is no ticks; a last line without its
// newline is a write in progress and is ignored.
func readTicks(path string) ([]Tick, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if i := bytes.LastIndexByte(data, '\n'); i < len(data)-1 {
		data = data[:i+1]
	}
	var out []Tick
	for n, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 3 {
			return out, fmt.Errorf("%s:%d: want job, tick and node, got %q", path, n+1, line)
		}
		out = append(out, Tick{Job: f[0], Tick: f[1], Node: f[2]})
	}
	return out, nil
}

// DuplicateTick is a job tick that ran more than once.
type DuplicateTick struct {
	Job, Tick string
	Nodes     []string
}

// tickReport sums up the ticks: per job the number run, and every tick run twice.
type tickReport struct {
	PerJob     map[string]int
	Duplicates []DuplicateTick
	Total      int
	// Seconds are, per job, the distinct ticks that ran, as Unix seconds, sorted (empty
	// when COORD_TICK is not a number).
	Seconds map[string][]int64
}

// TickGap is a stretch of ticks of one job that did not run.
type TickGap struct {
	Job         string
	After, Next int64 // the ticks that ran before and after (Unix seconds)
}

// Missed is the number of ticks skipped.
func (g TickGap) Missed() int64 { return g.Next - g.After - 1 }

// gaps returns, per job, the number of ticks missed between its first and last tick run
// and the longest run of missed ticks.
func (r tickReport) gaps(job string) (missed int64, longest TickGap) {
	ss := r.Seconds[job]
	for i := 1; i < len(ss); i++ {
		g := TickGap{Job: job, After: ss[i-1], Next: ss[i]}
		missed += g.Missed()
		if g.Missed() > longest.Missed() {
			longest = g
		}
	}
	return missed, longest
}

func checkTicks(ticks []Tick) tickReport {
	r := tickReport{PerJob: map[string]int{}, Seconds: map[string][]int64{}}
	seen := map[[2]string][]string{}
	for _, t := range ticks {
		k := [2]string{t.Job, t.Tick}
		if len(seen[k]) == 0 {
			r.PerJob[t.Job]++
			if sec, err := strconv.ParseInt(t.Tick, 10, 64); err == nil {
				r.Seconds[t.Job] = append(r.Seconds[t.Job], sec)
			}
		}
		seen[k] = append(seen[k], t.Node)
		r.Total++
	}
	for k, nodes := range seen {
		if len(nodes) > 1 {
			r.Duplicates = append(r.Duplicates, DuplicateTick{Job: k[0], Tick: k[1], Nodes: nodes})
		}
	}
	for _, ss := range r.Seconds {
		sort.Slice(ss, func(i, j int) bool { return ss[i] < ss[j] })
	}
	sort.Slice(r.Duplicates, func(i, j int) bool {
		a, b := r.Duplicates[i], r.Duplicates[j]
		if a.Job != b.Job {
			return a.Job < b.Job
		}
		return a.Tick < b.Tick
	})
	return r
}
