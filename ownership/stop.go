package ownership

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
	"time"
)

// Planned stops of many workers at once — Close, a drain, a rebalance — hand them over in
// paced batches rather than all together. A worker not yet asked keeps running and renewing
// its claim as usual; one that was asked stops, keeps renewing while it stops, and then
// releases. So every claim stays renewed until it is released, however many workers the
// node holds. Asked all at once, 10,000 workers stopped together and queued for the store
// with their renewals stopped: claims ran out on the way (issue 18).
//
// The releases must never crowd out the renewals of the workers still waiting their turn:
// at most stopWindow workers are between asked and released, batches go out every
// stopTick at a rate that ends the stop within a quarter of ShutdownGrace, and the rate
// halves whenever a renewal of this node failed or was slow since the last batch. The log
// says how far a stop has got every second ("stop: released k of N workers").

const (
	// stopTick is how often a paced stop asks its next batch.
	stopTick = 20 * time.Millisecond
	// stopWindow bounds the workers between asked and released, and the releases in flight.
	stopWindow = 128
	// minStopRate and maxStopRate bound the pace of Close and drains (workers per second);
	// between them the pace is chosen to end within a quarter of ShutdownGrace. The store
	// does about 11k writes/s on one node and 14–22k/s on three (DESIGN.md); the node's
	// renewals and the other nodes' claims of what it releases need their share.
	minStopRate = 1000.0
	maxStopRate = 4000.0
	// stopProgressEvery is how often a paced stop logs its progress.
	stopProgressEvery = time.Second
)

// pacedStop describes one planned stop of many workers.
type pacedStop struct {
	what   string        // "stop", "drain", "rebalance"
	verb   string        // "released", "handed over"
	rate   float64       // workers asked per second, at most
	budget time.Duration // the stop should end within this (0: no limit to report)
	ask    func(*worker) // begin the worker's stop or handoff
	// gone reports that the worker no longer holds its claim: released, or its term ended.
	gone func(*worker) bool
	// abort, if set, is checked before each batch; true ends the stop early.
	abort func() bool
}

// stopRate is the pace of a planned stop of n workers: it ends within a quarter of
// ShutdownGrace, bounded by minStopRate and maxStopRate.
func (e *Engine) stopRate(n int) float64 {
	r := float64(n) / (e.cfg.ShutdownGrace / 4).Seconds()
	return min(max(r, minStopRate), maxStopRate)
}

// pace asks the workers of ws (owned by this node) to stop or hand over, in batches at
// p.rate with at most stopWindow in flight, and waits until each is gone. It returns how
// many are gone; fewer than len(ws) when ctx ended or p.abort said so.
func (e *Engine) pace(ctx context.Context, p pacedStop, ws []*worker) int {
	n := len(ws)
	if n == 0 {
		return 0
	}
	clock := e.cfg.Clock
	start := clock.Now()
	if est := time.Duration(float64(n) / p.rate * float64(time.Second)); p.budget > 0 && est > p.budget {
		e.log.Warn(fmt.Sprintf("%s: %d workers cannot be %s within ShutdownGrace; this takes about %v", p.what, n, p.verb, est.Round(time.Second)),
			"workers", n, "estimate", est.Round(time.Second), "shutdown_grace", p.budget)
	}
	type flight struct {
		w     *worker
		since time.Time
	}
	var flying []flight
	// A worker whose stop outlasts its own ShutdownGrace has been given up by its term
	// (the claim is left to expire); it must not hold its place in the window.
	giveUp := e.cfg.ShutdownGrace + e.cfg.RenewInterval
	next, done, stuck := 0, 0, 0
	pace := p.rate
	credit := 1.0 // the first worker goes at once
	strain := e.renewals.strain.Load()
	lastLog := start
	t := clock.NewTimer(stopTick)
	defer t.Stop()
	for {
		now := clock.Now()
		kept := flying[:0]
		for _, f := range flying {
			switch {
			case p.gone(f.w):
				done++
			case now.Sub(f.since) > giveUp:
				done++
				stuck++
			default:
				kept = append(kept, f)
			}
		}
		flying = kept
		if done == n {
			break
		}
		if now.Sub(lastLog) >= stopProgressEvery {
			lastLog = now
			e.logProgress(p, done, n, now.Sub(start))
		}
		if p.abort != nil && p.abort() {
			break
		}
		// Renewals first: a failed or slow renewal since the last batch halves the pace,
		// calm batches bring it back up step by step.
		if s := e.renewals.strain.Load(); s != strain {
			strain = s
			pace = max(pace/2, p.rate/16)
		} else {
			pace = min(p.rate, pace+p.rate/50)
		}
		credit = min(credit+pace*stopTick.Seconds(), max(1, 2*pace*stopTick.Seconds()))
		for next < n && len(flying) < stopWindow && credit >= 1 {
			w := ws[next]
			next++
			if p.gone(w) {
				done++ // nothing to hand over any more
				continue
			}
			credit--
			p.ask(w)
			flying = append(flying, flight{w, now})
		}
		if done == n {
			break
		}
		t.Reset(stopTick)
		select {
		case <-ctx.Done():
			e.logProgress(p, done, n, clock.Now().Sub(start))
			return done
		case <-t.C():
		}
	}
	took := clock.Now().Sub(start)
	e.log.Info(fmt.Sprintf("%s: %s %d of %d workers", p.what, p.verb, done, n), "took", took.Round(time.Millisecond))
	if stuck > 0 {
		e.log.Warn(fmt.Sprintf("%s: %d workers did not stop within ShutdownGrace; their claims will expire", p.what, stuck),
			"shutdown_grace", e.cfg.ShutdownGrace)
	}
	return done
}

func (e *Engine) logProgress(p pacedStop, done, n int, elapsed time.Duration) {
	args := []any{"elapsed", elapsed.Round(100 * time.Millisecond)}
	if done > 0 && done < n {
		eta := time.Duration(float64(elapsed) * float64(n-done) / float64(done))
		args = append(args, "eta", eta.Round(100*time.Millisecond))
	}
	e.log.Info(fmt.Sprintf("%s: %s %d of %d workers", p.what, p.verb, done, n), args...)
}

// stopWorkers is Close's part of a planned stop: the workers that own nothing stop at once,
// the owners in paced batches, and it waits until every worker has returned.
func (e *Engine) stopWorkers(ws []*worker) {
	var owners []*worker
	for _, w := range ws {
		if w.owning() {
			owners = append(owners, w)
		} else {
			w.requestStop()
		}
	}
	sortWorkers(owners)
	e.pace(e.stopCtx, pacedStop{what: "stop", verb: "released", rate: e.stopRate(len(owners)),
		budget: e.cfg.ShutdownGrace, ask: (*worker).requestStop, gone: (*worker).finished}, owners)
	for _, w := range ws {
		w.requestStop() // those the stop gave up on, or that claimed meanwhile
		<-w.doneC()     // bounded: a term gives up at stopCtx's end
	}
}

// drain hands over, in paced batches, every worker this node owns, as long as the drain
// that started it (generation gen) is on.
func (e *Engine) drain(gen uint64) {
	var owners []*worker
	e.mu.Lock()
	for _, w := range e.workers {
		if w.owning() {
			owners = append(owners, w)
		}
	}
	e.mu.Unlock()
	sortWorkers(owners)
	e.pace(e.ctx, pacedStop{what: "drain", verb: "handed over", rate: e.stopRate(len(owners)), budget: e.cfg.ShutdownGrace,
		ask:   func(w *worker) { w.requestHandoff("drain") },
		gone:  func(w *worker) bool { return !w.owning() },
		abort: func() bool { return !e.drainIs(gen) }}, owners)
}

// drainIs reports whether the drain of generation gen is still on.
func (e *Engine) drainIs(gen uint64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.draining && !e.closing && e.drainGen == gen
}

func sortWorkers(ws []*worker) {
	sort.Slice(ws, func(i, j int) bool { return ws[i].name < ws[j].name })
}

// finished reports whether the worker's loop has returned.
func (w *worker) finished() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done.closed
}

// renewWatch passes the engine's measurements on and notes, for paced stops, each renewal
// that failed or took longer than half a RenewInterval.
type renewWatch struct {
	Metrics
	slow   time.Duration
	strain atomic.Uint64
}

func (r *renewWatch) Renewal(worker string, latency time.Duration, err error) {
	if err != nil || latency > r.slow {
		r.strain.Add(1)
	}
	r.Metrics.Renewal(worker, latency, err)
}

// acquireRelease waits for a slot to release a claim; false if ctx ended first. Releases
// have their own slots, so that a burst of claims cannot hold up a release while its
// worker waits, no longer renewing.
func (e *Engine) acquireRelease(ctx context.Context) bool {
	select {
	case e.releases <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (e *Engine) doneRelease() { <-e.releases }
