package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetcoord/coordinator/kv"
)

// The rolling phase (issue 14): three holders (holder.go, the ownership library at the
// default timings) share the same 1,000 no-op workers against one daemon at TTL 15s. Once
// the claims have settled, each holder in turn is restarted: SIGTERM (it hands its workers
// over and exits), settle, start it again with the same node name, settle. Settled: the
// holders own all 1,000 and no count changed for rollingStable.
//
//   - rolling_moves_per_leave_1000, rolling_moves_per_join_1000: medians over the three
//     restarts of the ownership terms the holders began between one settled state and the
//     next (each one is a worker stopped on one node and started on another: a move; a
//     worker that moves twice counts twice). A leave must move the leaving holder's share,
//     about 333; a join moves about 333 back without stickiness, fewer with it.
//   - rolling_net_moves_per_leave_1000, _join_1000: the same counted from the store, the
//     workers whose owner differs between the two settled states (a worker that moved
//     away and back counts 0).
//
// Moves that come more than rollingStable after the last change are counted in the next
// window (or, after the last join, not at all).
const (
	rollingWorkers = 1000
	rollingHolders = 3
	rollingStable  = 15 * time.Second // longer than a rebalance takes to begin (RebalanceDelay 6s)
	rollingBound   = 3 * time.Minute  // to settle after a start, a leave or a join
)

func (b *bench) rolling(ctx context.Context) error {
	b.logf("rolling: starting a coordinator daemon (TTL 15s, no workers)")
	c, err := b.startSingle("rolling")
	if err != nil {
		return err
	}
	defer c.Close()
	url := c.Node(0).ClientURL()
	const ns = "rolling"
	hs := make([]*holder, rollingHolders)
	defer func() {
		for _, h := range hs {
			if h != nil {
				b.stopHolder(h, "rolling "+h.node)
			}
		}
	}()
	start := func(i int) error {
		h, err := b.startHolder(url, ns, fmt.Sprintf("r%d", i), "r", rollingWorkers)
		if err != nil {
			return err
		}
		hs[i] = h
		return h.WaitReady(time.Minute)
	}
	for i := range hs {
		if err := start(i); err != nil {
			return err
		}
	}
	b.logf("rolling: %d holders × %d workers; waiting for the claims to settle", rollingHolders, rollingWorkers)
	t0 := time.Now()
	counts, err := waitOwned(hs, rollingWorkers, rollingStable, rollingBound)
	if err != nil {
		return err
	}
	b.logf("  settled after %v: %v", time.Since(t0).Round(100*time.Millisecond), counts)
	prev, err := ownerOfEach(url, ns)
	if err != nil {
		return err
	}
	claimed := func() []int64 {
		out := make([]int64, len(hs))
		for i, h := range hs {
			if h != nil {
				out[i] = h.claimed.Load()
			}
		}
		return out
	}
	movesSince := func(before []int64) int {
		n := 0
		for i, h := range hs {
			if h != nil {
				n += int(h.claimed.Load() - before[i])
			}
		}
		return n
	}
	netSince := func(before map[string]string) (map[string]string, int, error) {
		now, err := ownerOfEach(url, ns)
		if err != nil {
			return nil, 0, err
		}
		n := 0
		for w, node := range now {
			if before[w] != node {
				n++
			}
		}
		return now, n, nil
	}
	// Leases the live holders lost: a lost lease that the same holder claims again counts as
	// a move without being one, so a run that lost some says so.
	var lostTotal int64
	lostSince := func(before []int64) {
		for i, h := range hs {
			if h != nil {
				lostTotal += h.lost.Load() - before[i]
			}
		}
	}
	lostNow := func() []int64 {
		out := make([]int64, len(hs))
		for i, h := range hs {
			if h != nil {
				out[i] = h.lost.Load()
			}
		}
		return out
	}
	for i := range hs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		name := hs[i].node
		// Leave.
		before, lostBefore := claimed(), lostNow()
		t0 := time.Now()
		b.stopHolder(hs[i], "rolling "+name)
		hs[i] = nil
		var rest []*holder
		for _, h := range hs {
			if h != nil {
				rest = append(rest, h)
			}
		}
		counts, err := waitOwned(rest, rollingWorkers, rollingStable, rollingBound)
		if err != nil {
			return fmt.Errorf("after %s left: %w", name, err)
		}
		leave := movesSince(before)
		lostSince(lostBefore)
		var netLeave, net int
		if prev, netLeave, err = netSince(prev); err != nil {
			return err
		}
		settled := time.Since(t0) - rollingStable
		b.logf("  %s left: %d moves (%d net), settled %v after the SIGTERM: %v", name, leave, netLeave, settled.Round(100*time.Millisecond), counts)
		b.res.Sample("rolling_moves_leave", float64(leave))
		b.res.Sample("rolling_net_moves_leave", float64(netLeave))
		// Join.
		before, lostBefore = claimed(), lostNow()
		t0 = time.Now()
		if err := start(i); err != nil {
			return fmt.Errorf("restarting %s: %w", name, err)
		}
		if counts, err = waitOwned(hs, rollingWorkers, rollingStable, rollingBound); err != nil {
			return fmt.Errorf("after %s rejoined: %w", name, err)
		}
		join := movesSince(before)
		lostSince(lostBefore)
		if prev, net, err = netSince(prev); err != nil {
			return err
		}
		settled = time.Since(t0) - rollingStable
		b.logf("  %s rejoined: %d moves (%d net), settled %v after its start: %v", name, join, net, settled.Round(100*time.Millisecond), counts)
		b.res.Sample("rolling_moves_join", float64(join))
		b.res.Sample("rolling_net_moves_join", float64(net))
		b.res.Note("rolling: restart of %s: %d moves on leave, %d on join (%d and %d net); owned after: %v", name, leave, join,
			netLeave, net, counts)
	}
	if n := lostTotal; n > 0 {
		b.res.Note("rolling: the holders lost %d leases during the restarts; a lease lost and claimed again by the same holder counts as a move", n)
		b.logf("  the holders lost %d leases during the restarts", n)
	}
	for _, f := range []struct{ sample, name string }{
		{"rolling_moves_leave", "rolling_moves_per_leave_1000"},
		{"rolling_moves_join", "rolling_moves_per_join_1000"},
		{"rolling_net_moves_leave", "rolling_net_moves_per_leave_1000"},
		{"rolling_net_moves_join", "rolling_net_moves_per_join_1000"},
	} {
		b.res.Add(f.name, median(b.res.Samples[f.sample]), "workers")
	}
	return nil
}

// ownerOfEach reads the node that owns each worker in namespace ns from the store.
func ownerOfEach(url, ns string) (map[string]string, error) {
	nc, err := nats.Connect(url, nats.Name("bench rolling"))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := kv.Open(ctx, nc, kv.Options{Namespace: ns})
	if err != nil {
		return nil, err
	}
	claims, err := st.Workers.ListClaims(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(claims))
	for _, c := range claims {
		if c.Err != nil {
			return nil, fmt.Errorf("claim of %s: %w", c.Worker, c.Err)
		}
		out[c.Worker] = c.Claim.Node
	}
	return out, nil
}
