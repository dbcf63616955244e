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
	// ShutdownGrace of the nodes when the config sets one (-ops): stops that took longer
	// are counted.
	ShutdownGrace time.Duration
}

// overlapStats sums up the overlap violations of one kind of placement.
type overlapStats struct {
	N       int
	Longest time.Duration
	Total   time.Duration
}

func (o overlapStats) String() string {
	if o.N == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (longest %s, total %s)", o.N, fmtDur(o.Longest), fmtDur(o.Total))
}

// overlaps counts the overlap violations on one node and across nodes.
func overlaps(vs []cluster.Violation) (oneNode, across overlapStats) {
	for _, v := range vs {
		if v.Kind != cluster.ViolationOverlap {
			continue
		}
		o := &across
		if v.SameNode() {
			o = &oneNode
		}
		o.N++
		o.Total += v.Together()
		o.Longest = max(o.Longest, v.Together())
	}
	return oneNode, across
}

// faultOf is the index of the fault during or after which stamp falls (the last one
// injected before it), or -1.
func faultOf(at cluster.Mono, faults []*Fault) int {
	i := -1
	for k, f := range faults {
		if f.Start <= at {
			i = k
		}
	}
	return i
}

// overlapsPerFault counts overlap violations by the fault that was last injected when the
// second copy started.
func overlapsPerFault(vs []cluster.Violation, faults []*Fault) map[int]int {
	out := map[int]int{}
	for _, v := range vs {
		if v.Kind == cluster.ViolationOverlap {
			out[faultOf(v.B.Start, faults)]++
		}
	}
	return out
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
		perFault := overlapsPerFault(r.Violations, faults)
		fmt.Fprintln(tw, "  fault\theld\trecovered after\tworkers interrupted\tlongest interruption\toverlaps begun\twhat it did")
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
			note := f.Note
			if len(f.Workers) > 0 && f.Kind != FaultReload {
				note = strings.Join(f.Workers, ",") + ": " + note
			}
			if f.Err != nil {
				note = "FAILED: " + f.Err.Error()
			}
			if note == "" {
				note = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%d\t%s\n", f.Label(), fmtDur(f.Healed.Sub(f.Start)), rec, n, long, perFault[i], note)
		}
		tw.Flush()
		if perFault[-1] > 0 {
			fmt.Fprintf(w, "  (%d overlaps began before the first fault)\n", perFault[-1])
		}

		fmt.Fprintln(w, "\nfault counts per kind:")
		fmt.Fprintln(tw, "  kind\tinjected\tfailed\toverlaps begun after one")
		var kinds []string
		count, failed, ov := map[string]int{}, map[string]int{}, map[string]int{}
		for i, f := range faults {
			if count[f.Kind] == 0 {
				kinds = append(kinds, f.Kind)
			}
			count[f.Kind]++
			if f.Err != nil {
				failed[f.Kind]++
			}
			ov[f.Kind] += perFault[i]
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\n", k, count[k], failed[k], ov[k])
		}
		fmt.Fprintf(tw, "  total\t%d\t%d\t%d\n", len(faults), sumValues(failed), sumValues(ov))
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
	oneNode, across := overlaps(r.Violations)
	lockOne, lockAcross := 0, 0
	for _, v := range r.Violations {
		if v.Kind == cluster.ViolationLock {
			if v.SameNode() {
				lockOne++
			} else {
				lockAcross++
			}
		}
	}
	fmt.Fprintf(tw, "  overlapping runs of one worker on one node\t%s\t0\n", oneNode)
	fmt.Fprintf(tw, "  overlapping runs of one worker across nodes\t%s\t0\n", across)
	fmt.Fprintf(tw, "  copies that found the worker's lock held (one node / across)\t%d / %d\t0\n", lockOne, lockAcross)
	fmt.Fprintf(tw, "  fencing tokens not increasing\t%d\t0\n", countKind(r.Violations, cluster.ViolationToken))
	if r.Ticks != nil {
		fmt.Fprintf(tw, "  duplicate cron ticks (%d jobs, retry_lost off, %d ticks run)\t%d\t0\n", len(jobs), tickCount(r.Ticks), len(r.Ticks.Duplicates))
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
	if r.ShutdownGrace > 0 {
		slow, longest := 0, time.Duration(0)
		for _, x := range r.Runs {
			if d := x.StopTook(); d > r.ShutdownGrace {
				slow++
				longest = max(longest, d)
			}
		}
		fmt.Fprintf(w, "  (stops that outlived shutdown_grace %v: %d, the longest %s)\n", r.ShutdownGrace, slow, fmtDur(longest))
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

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
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
