package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// The release phase (issue 14), on three nodes at TTL 2s (-release-ttl) with the recorder workers of the
// ttl2 phase: `coordinator release W`, the operator command, against the node that runs W.
//   - release_ms_median, _p99, _worst: from just before the command is started to the
//     recorder's start stamp of W on another node.
//   - release_gap_ms_median, _worst: from the released run's stop line to that start: the
//     time W ran nowhere.
//   - release_returned_count: releases after which W started on the releasing node again
//     within releaseReturnWindow of its start elsewhere (a bounce).
//   - release_unmoved_count: releases after which W did not start on another node within
//     releaseBound.
//
// Every wait is bounded, so that the phase measures a release that waits for the claim grace
// (and bounces back) as well as one that names its successor (and stays).

// releaseBound bounds the wait from the release to W running on another node.
const releaseBound = 30 * time.Second

// releaseReturnWindow is how long after W started elsewhere a start on the releasing node
// still counts as a return: three claim graces, a rebalance delay and two renewals at the
// daemon's timings for ttl.
func releaseReturnWindow(ttl time.Duration) time.Duration {
	t := ownershipTimings(ttl)
	claimGrace := 2 * t.renew
	return 3*claimGrace + t.rebalance + 2*t.renew
}

func (b *bench) release(ctx context.Context) error {
	b.logf("release: three nodes, TTL %v: starting; %d releases", b.opts.releaseTTL, b.opts.releases)
	bc, err := startBenchCluster(b.bins, filepath.Join(b.work, "release"), b.opts.releaseTTL, probes, nil, b.logf)
	if err != nil {
		b.releaseFigures(err.Error())
		return err
	}
	defer b.closeCluster(bc, phaseRelease)
	rng := rand.New(rand.NewPCG(14, 1))
	var returned, unmoved int
	for i := 0; i < b.opts.releases && ctx.Err() == nil; i++ {
		s, err := bc.releaseSample(ctx, rng.IntN(bc.c.Len()))
		if err != nil {
			b.releaseFigures(err.Error())
			return fmt.Errorf("release %d: %w", i+1, err)
		}
		if !s.moved {
			unmoved++
			b.logf("  release %d/%d of %s on %s: not running elsewhere after %v (CLI took %v)", i+1, b.opts.releases, s.worker, s.from, releaseBound, s.cli.Round(time.Millisecond))
			continue
		}
		note := ""
		if s.returned {
			returned++
			b.res.Sample("release_returned_after_ms", ms(s.back))
			note = fmt.Sprintf("; back on %s %v later", s.from, s.back.Round(time.Millisecond))
		}
		b.logf("  release %d/%d of %s: %s → %s in %v (ran nowhere for %v, CLI took %v)%s", i+1, b.opts.releases, s.worker, s.from, s.to,
			s.d.Round(100*time.Microsecond), s.gap.Round(100*time.Microsecond), s.cli.Round(time.Millisecond), note)
		b.res.Sample("release_ms", ms(s.d))
		if s.stopped {
			b.res.Sample("release_gap_ms", ms(s.gap))
		}
		b.res.Sample("release_cli_ms", ms(s.cli))
	}
	b.res.Add("release_returned_count", float64(returned), "releases")
	b.res.Add("release_unmoved_count", float64(unmoved), "releases")
	b.res.Note("release at TTL %v: %d releases; %d moved back to the releasing node within %v of starting elsewhere; %d did not start elsewhere within %v",
		bc.ttl, b.opts.releases, returned, releaseReturnWindow(bc.ttl), unmoved, releaseBound)
	b.releaseFigures("")
	return ctx.Err()
}

func (b *bench) releaseFigures(why string) {
	for _, n := range []string{"release_ms", "release_gap_ms"} {
		v := b.res.Samples[n]
		if len(v) == 0 {
			if why == "" {
				why = "no release moved its worker"
			}
			b.res.NA(n+"_median", why)
			continue
		}
		b.res.Add(n+"_median", median(v), "ms")
		if n == "release_ms" {
			b.res.Add(n+"_p99", quantile(v, 0.99), "ms")
		}
		b.res.Add(n+"_worst", slices.Max(v), "ms")
	}
}

// releaseSample is one release as measured.
type releaseSample struct {
	worker, from, to string
	moved            bool          // W started on another node within releaseBound
	d                time.Duration // release command started → W started elsewhere
	stopped          bool          // the released run's stop line was found
	gap              time.Duration // released run's stop → W started elsewhere
	cli              time.Duration // the release command's run time
	returned         bool          // W started on from again within the return window
	back             time.Duration // W's start elsewhere → its start on from
}

// releaseSample releases a probe that node index target runs (or the next node that runs
// one) with `coordinator release`, and follows where it runs next.
func (b *benchCluster) releaseSample(ctx context.Context, target int) (releaseSample, error) {
	var s releaseSample
	if err := b.settle(); err != nil {
		return s, err
	}
	w, r, err := b.pickProbe(target)
	if err != nil {
		return s, err
	}
	s.worker, s.from = w, r.Node
	owner := b.c.NodeByName(r.Node)
	if owner == nil {
		return s, fmt.Errorf("%s runs on unknown node %q", w, r.Node)
	}
	cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	t0 := cluster.MonoNow()
	out, err := owner.CLI(cctx, "release", w)
	s.cli = cluster.MonoNow().Sub(t0)
	if err != nil {
		return s, fmt.Errorf("coordinator release %s: %w (%s)", w, err, out)
	}
	var next tailRun
	err = cluster.WaitFor(releaseBound, w+" to run elsewhere", func() bool {
		if b.tail.update() != nil {
			return false
		}
		var ok bool
		next, ok = b.tail.startedAfter(w, t0, s.from)
		return ok
	})
	if err != nil {
		return s, nil // not moved: counted, not fatal
	}
	s.moved, s.to, s.d = true, next.Node, next.Start.Sub(t0)
	for _, run := range b.tail.runs[w] {
		if run.PID == r.PID && run.Node == r.Node && run.Stopped {
			s.stopped, s.gap = true, next.Start.Sub(run.Last)
		}
	}
	// Did it come back? Wait out the window, bounded, then look.
	window := releaseReturnWindow(b.ttl)
	end := next.Start + cluster.Mono(window)
	for cluster.MonoNow() < end && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond) // the observation window, not synchronisation
	}
	if err := b.tail.update(); err != nil {
		return s, err
	}
	for _, run := range b.tail.runs[w] {
		if run.Start > next.Start && run.Start <= end && run.Node == s.from {
			s.returned, s.back = true, run.Start.Sub(next.Start)
			break
		}
	}
	return s, nil
}
