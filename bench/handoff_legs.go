package main

import (
	"fmt"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// The two legs of a SIGTERM handoff, from the recorder's stamps (issue 14): SIGTERM → the
// old command's exit (its stop line, written as it exits), and that exit → the new
// command's start on another node. The new command's start is its watchdog's stamp just
// before the exec (COORD_EXEC_NS, the recorder's exec line): what the coordinator adds to
// the command's own stop. What follows is the command's own start-up, a third figure:
// exec → the recorder's start line (the exec, the Go runtime's start-up, opening runs.log,
// taking the lock), split at its main stamp, the first moment its own code ran.
const (
	handoffExitSamples    = "handoff_exit_ms"    // SIGTERM → old command's exit
	handoffMoveSamples    = "handoff_move_ms"    // old command's exit → new command's exec
	handoffRuntimeSamples = "handoff_runtime_ms" // new command's exec → its main
	handoffSetupSamples   = "handoff_setup_ms"   // new command's exec → its start line
)

// sampleHandoffLegs adds the legs of the handoff of worker w, whose owner from got SIGTERM
// at t0, to res. Call it once the new run has started; runsPath is the cluster's runs.log.
func sampleHandoffLegs(res *Results, runsPath, w string, t0 cluster.Mono, from string) error {
	runs, err := cluster.ReadRuns(runsPath)
	if err != nil {
		return err
	}
	var old, next *cluster.Run
	for _, r := range cluster.RunsOf(runs, w) {
		switch {
		case r.Node == from && r.Start < t0 && r.Stopped && r.End >= t0:
			old = &r
		case r.Node != from && r.Start > t0 && next == nil:
			next = &r
		}
	}
	if old == nil || next == nil {
		return fmt.Errorf("handoff legs of %s: no stopped run on %s and later run elsewhere in %s", w, from, runsPath)
	}
	exec := next.Exec
	if exec == 0 { // a recorder without exec lines: its main stamp, or its start line
		exec = next.Main
	}
	if exec == 0 {
		exec = next.Start
	}
	res.Sample(handoffExitSamples, ms(old.End.Sub(t0)))
	res.Sample(handoffMoveSamples, ms(exec.Sub(old.End)))
	if next.Main != 0 {
		res.Sample(handoffRuntimeSamples, ms(next.Main.Sub(exec)))
	}
	res.Sample(handoffSetupSamples, ms(next.Start.Sub(exec)))
	return nil
}

// handoffLegFigures adds the medians and p99s of the legs sampled so far.
func handoffLegFigures(res *Results) {
	for _, name := range []string{handoffExitSamples, handoffMoveSamples, handoffRuntimeSamples, handoffSetupSamples} {
		v := res.Samples[name]
		if len(v) == 0 {
			res.NA(name+"_median", "no samples")
			res.NA(name+"_p99", "no samples")
			continue
		}
		res.Add(name+"_median", median(v), "ms")
		res.Add(name+"_p99", quantile(v, 0.99), "ms")
	}
}
