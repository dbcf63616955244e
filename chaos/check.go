package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// Gap is a time when a worker ran nowhere, between two of its runs.
type Gap struct {
	Worker        string
	From, To      cluster.Mono
	Before, After cluster.Run
}

func (g Gap) Duration() time.Duration { return g.To.Sub(g.From) }

// gapsOf returns every gap of every worker, in order. (cluster.Gaps keeps only the
// longest; the per-fault table needs them all.)
func gapsOf(runs []cluster.Run) map[string][]Gap {
	byWorker := map[string][]cluster.Run{}
	for _, r := range runs {
		if !r.Overlap {
			byWorker[r.Worker] = append(byWorker[r.Worker], r)
		}
	}
	out := map[string][]Gap{}
	for w, rs := range byWorker {
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].Start < rs[j].Start })
		covered, last := rs[0].End, rs[0]
		for _, r := range rs[1:] {
			if r.Start > covered {
				out[w] = append(out[w], Gap{Worker: w, From: covered, To: r.Start, Before: last, After: r})
			}
			if r.End > covered {
				covered, last = r.End, r
			}
		}
	}
	return out
}

// cause says which fault explains a gap: the last fault injected before the gap ended.
// "during" when the gap began before the cluster had recovered from it.
func cause(g Gap, faults []*Fault) string {
	var f *Fault
	for _, x := range faults {
		if x.Start <= g.To {
			f = x
		}
	}
	if f == nil {
		return "startup (no fault yet)"
	}
	if f.Recovered == 0 || g.From <= f.Recovered {
		return "during " + f.Label()
	}
	return fmt.Sprintf("after %s (+%v after recovery)", f.Label(), g.From.Sub(f.Recovered).Round(100*time.Millisecond))
}

// WorkerEnd is a worker's state at the end of the run.
type WorkerEnd struct {
	Running bool
	Node    string
	Token   uint64
	Why     string // when not running
}

// Result is everything the checker found.
type Result struct {
	Runs       []cluster.Run
	Violations []cluster.Violation
	Gaps       map[string][]Gap
	End        map[string]WorkerEnd
	Ticks      *tickReport // nil without jobs
	Leftover   []int       // processes alive after Close
	Problems   []string    // faults that failed, recoveries that timed out
	Unknown    int         // route connections whose dialer was not identified
}

// Failed reports whether the run found any violation.
func (r *Result) Failed() bool {
	if len(r.Violations) > 0 || len(r.Leftover) > 0 || len(r.Problems) > 0 {
		return true
	}
	if r.Ticks != nil && len(r.Ticks.Duplicates) > 0 {
		return true
	}
	for _, e := range r.End {
		if !e.Running {
			return true
		}
	}
	return false
}

func countKind(vs []cluster.Violation, kind string) int {
	n := 0
	for _, v := range vs {
		if v.Kind == kind {
			n++
		}
	}
	return n
}

// print writes the tables: workers, cron jobs, faults, then the checks. toMono converts a
// wall-clock time to the monotonic clock of the run's stamps.
func (r *Result) print(w io.Writer, workers []string, faults []*Fault, jobs []string, jobsNote string, toMono func(time.Time) cluster.Mono) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nworkers:")
	fmt.Fprintln(tw, "  worker\truns\tnodes\tlongest gap\twhy\tat the end")
	for _, wk := range workers {
		rs := cluster.RunsOf(r.Runs, wk)
		nodes := map[string]bool{}
		for _, x := range rs {
			nodes[x.Node] = true
		}
		var longest Gap
		for _, g := range r.Gaps[wk] {
			if g.Duration() > longest.Duration() {
				longest = g
			}
		}
		gap, why := "-", "-"
		if longest.Duration() > 0 {
			gap, why = fmtDur(longest.Duration()), cause(longest, faults)
		}
		end := r.End[wk]
		state := fmt.Sprintf("running on %s (token %d)", end.Node, end.Token)
		if !end.Running {
			state = "NOT RUNNING: " + end.Why
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t%s\n", wk, len(rs), strings.Join(sortedKeys(nodes), ","), gap, why, state)
	}
	tw.Flush()

	if r.Ticks != nil {
		fmt.Fprintln(w, "\ncron jobs (missed ticks are allowed: catch_up none; running one twice is not):")
		fmt.Fprintln(tw, "  job\tticks run\truns of one tick twice\tmissed\tlongest gap\twhy")
		dups := map[string]int{}
		for _, d := range r.Ticks.Duplicates {
			dups[d.Job]++
		}
		for _, j := range jobs {
			missed, g := r.Ticks.gaps(j)
			gap, why := "-", "-"
			if g.Missed() > 0 {
				gap = fmt.Sprintf("%d ticks", g.Missed())
				why = cause(Gap{From: toMono(time.Unix(g.After, 0)), To: toMono(time.Unix(g.Next, 0))}, faults)
			}
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%s\t%s\n", j, r.Ticks.PerJob[j], dups[j], missed, gap, why)
		}
		tw.Flush()
	}

	fmt.Fprintln(w, "\nfaults ((leader): the node led the workers' KV stream when the fault began):")
	if len(faults) == 0 {
		fmt.Fprintln(w, "  none injected (the run was too short for one)")
	} else {
		fmt.Fprintln(tw, "  fault\theld\trecovered after\tworkers interrupted\tlongest interruption")
		for i, f := range faults {
			until := cluster.Mono(1<<63 - 1)
			if i+1 < len(faults) {
				until = faults[i+1].Start
			}
			n, longest, who := 0, time.Duration(0), ""
			for _, gs := range r.Gaps {
				hit := false
				for _, g := range gs {
					if g.From >= f.Start && g.From < until {
						hit = true
						if g.Duration() > longest {
							longest, who = g.Duration(), g.Worker
						}
					}
				}
				if hit {
					n++
				}
			}
			rec := "NOT RECOVERED"
			if f.Recovered != 0 {
				rec = fmtDur(f.Recovered.Sub(f.Healed))
			}
			long := "-"
			if n > 0 {
				long = fmtDur(longest) + " (" + who + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", f.Label(), fmtDur(f.Healed.Sub(f.Start)), rec, n, long)
		}
		tw.Flush()
	}

	running := 0
	for _, wk := range workers {
		if r.End[wk].Running {
			running++
		}
	}
	fmt.Fprintln(w, "\nchecks:")
	fmt.Fprintln(tw, "  check\tfound\tmust be")
	fmt.Fprintf(tw, "  overlapping runs of one worker\t%d\t0\n", countKind(r.Violations, cluster.ViolationOverlap))
	fmt.Fprintf(tw, "  copies refused by the worker's lock\t%d\t0\n", countKind(r.Violations, cluster.ViolationLock))
	fmt.Fprintf(tw, "  fencing tokens not increasing\t%d\t0\n", countKind(r.Violations, cluster.ViolationToken))
	if r.Ticks != nil {
		fmt.Fprintf(tw, "  duplicate cron ticks (%d jobs, %d ticks run)\t%d\t0\n", len(jobs), tickCount(r.Ticks), len(r.Ticks.Duplicates))
	} else {
		fmt.Fprintf(tw, "  duplicate cron ticks\tskipped\t0\n")
	}
	fmt.Fprintf(tw, "  workers running at the end\t%d/%d\t%d/%d\n", running, len(workers), len(workers), len(workers))
	fmt.Fprintf(tw, "  faults that failed or did not recover\t%d\t0\n", len(r.Problems))
	fmt.Fprintf(tw, "  processes left after Close\t%d\t0\n", len(r.Leftover))
	tw.Flush()
	if jobsNote != "" {
		fmt.Fprintf(w, "  (cron jobs: %s)\n", jobsNote)
	}
	if r.Unknown > 0 {
		fmt.Fprintf(w, "  note: %d route connections of unidentified origin were held during partitions\n", r.Unknown)
	}

	if len(r.Violations) > 0 {
		fmt.Fprintln(w, "\nviolations:")
		for _, v := range r.Violations {
			fmt.Fprintf(w, "  %v\n", v)
		}
	}
	if r.Ticks != nil && len(r.Ticks.Duplicates) > 0 {
		fmt.Fprintln(w, "\nduplicate ticks:")
		for _, d := range r.Ticks.Duplicates {
			fmt.Fprintf(w, "  %s tick %s ran %d times, on %s\n", d.Job, d.Tick, len(d.Nodes), strings.Join(d.Nodes, ", "))
		}
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
	if len(r.Leftover) > 0 {
		fmt.Fprintf(w, "processes still alive after Close: %v\n", r.Leftover)
	}
}

func tickCount(t *tickReport) int {
	n := 0
	for _, c := range t.PerJob {
		n += c
	}
	return n
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}
