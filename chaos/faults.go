package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// Fault kinds. Each one leaves at most one node faulty, and the suite waits for the
// cluster to recover before the next.
const (
	FaultKill      = "kill"        // SIGKILL a node, start it again after Hold
	FaultPause     = "pause"       // SIGSTOP a node for Hold (longer than the TTL), then SIGCONT
	FaultTerm      = "term"        // graceful restart: SIGTERM, wait for the exit, start after Hold
	FaultLeader    = "leader-kill" // SIGKILL the node leading the workers' KV stream, start it after Hold
	FaultPartition = "partition"   // cut a node's routes off from the others for Hold, then heal
)

// Operator faults (-ops): what an operator does to a running cluster. Node is the node
// signalled, drained or whose NATS client port the command uses.
const (
	FaultReload       = "reload"        // change the env of 1–3 workers in the config file, SIGHUP every node
	FaultSlowStop     = "slow-stop"     // `coordinator release` of a worker whose stop outlives shutdown_grace
	FaultKVDelete     = "kv-del"        // `nats kv del` of 1–3 live claims
	FaultKVPurge      = "kv-purge"      // `nats kv purge` of 1–3 live claims
	FaultMarker       = "expiry-marker" // the server's MaxAge marker written early on 1–3 live claims
	FaultBucketDelete = "bucket-delete" // delete the workers bucket
	FaultRelease      = "release-burst" // `coordinator release` of 3–6 workers at once
	FaultDrain        = "drain"         // `coordinator drain NODE`, `drain --undo` after Hold
)

// faultKinds are every process and network kind, FaultPartition last (left out when the
// proxies cannot run).
var faultKinds = []string{FaultKill, FaultPause, FaultTerm, FaultLeader, FaultPartition}

// opKinds are the operator faults, added with -ops.
var opKinds = []string{FaultReload, FaultSlowStop, FaultKVDelete, FaultKVPurge, FaultMarker, FaultBucketDelete, FaultRelease, FaultDrain}

// isOp reports whether kind is an operator fault.
func isOp(kind string) bool {
	for _, k := range opKinds {
		if k == kind {
			return true
		}
	}
	return false
}

// Fault is one planned and, once injected, performed fault.
type Fault struct {
	N     int
	Kind  string
	Node  int           // node index; for FaultLeader decided when injected
	Hold  time.Duration // how long the node stays down, paused, cut off or drained
	Quiet time.Duration // wait before injecting, after the previous recovery
	Pick  uint64        // seeds the choice of workers of an operator fault
	Count int           // how many workers an operator fault targets

	// Filled in when injected.
	NodeName  string
	Leader    bool         // the node led the workers' KV stream when the fault began
	Start     cluster.Mono // injected
	Healed    cluster.Mono // restarted, resumed or healed
	Recovered cluster.Mono // every node ready and the workers stream current again; 0 if not
	Err       error
	Workers   []string // the workers an operator fault acted on
	Note      string   // what an operator fault did, e.g. "2 of 3 had no claim"
}

func (f Fault) String() string {
	switch f.Kind {
	case FaultKill, FaultLeader:
		return fmt.Sprintf("#%d %s %s, down %v", f.N, f.Kind, f.NodeName, f.Hold.Round(100*time.Millisecond))
	case FaultPause:
		return fmt.Sprintf("#%d pause %s for %v", f.N, f.NodeName, f.Hold.Round(100*time.Millisecond))
	case FaultTerm:
		return fmt.Sprintf("#%d term %s, down %v", f.N, f.NodeName, f.Hold.Round(100*time.Millisecond))
	case FaultPartition:
		return fmt.Sprintf("#%d partition %s for %v", f.N, f.NodeName, f.Hold.Round(100*time.Millisecond))
	case FaultDrain:
		return fmt.Sprintf("#%d drain %s for %v", f.N, f.NodeName, f.Hold.Round(100*time.Millisecond))
	case FaultBucketDelete:
		return fmt.Sprintf("#%d bucket-delete via %s", f.N, f.NodeName)
	}
	if isOp(f.Kind) {
		return fmt.Sprintf("#%d %s %s via %s", f.N, f.Kind, strings.Join(f.Workers, ","), f.NodeName)
	}
	return fmt.Sprintf("#%d %s", f.N, f.Kind)
}

// Label is a short name for tables: "#3 pause n1", "#4 partition n2 (leader)" when the
// node led the workers' KV stream.
func (f Fault) Label() string {
	l := fmt.Sprintf("#%d %s %s", f.N, f.Kind, f.NodeName)
	if f.Leader && f.Kind != FaultLeader {
		l += " (leader)"
	}
	return l
}

// planner yields the faults of a seed, always in the same order with the same parameters:
// rounds of every kind in a shuffled order, each with a node, a hold time and a quiet time
// drawn from the seeded generator. It draws the same numbers per fault whatever the kind,
// so that the sequence does not depend on how the run went.
type planner struct {
	rng   *rand.Rand
	ttl   time.Duration
	nodes int
	kinds []string
	round []string
	n     int
}

func newPlanner(seed int64, ttl time.Duration, nodes int, kinds []string) *planner {
	return &planner{rng: rand.New(rand.NewPCG(uint64(seed), 0x636861_6f73)), ttl: ttl, nodes: nodes, kinds: kinds}
}

func (p *planner) next() Fault {
	if len(p.round) == 0 {
		p.round = append([]string(nil), p.kinds...)
		p.rng.Shuffle(len(p.round), func(i, j int) { p.round[i], p.round[j] = p.round[j], p.round[i] })
	}
	kind := p.round[0]
	p.round = p.round[1:]
	p.n++
	node := p.rng.IntN(p.nodes)
	u := p.rng.Float64()
	quiet := p.scale(1, 3, p.rng.Float64())
	pick := p.rng.Uint64()
	count := 1 + int(u*3) // 1–3
	var hold time.Duration
	switch kind {
	case FaultRelease:
		count = 3 + int(u*4) // 3–6
	case FaultSlowStop, FaultBucketDelete, FaultDrain:
		count = 1
	}
	switch kind {
	case FaultDrain:
		hold = p.scale(1, 3, u)
	case FaultKill, FaultLeader:
		hold = p.scale(0.5, 2.5, u)
	case FaultPause:
		hold = p.scale(1.5, 4, u) // always longer than the TTL
	case FaultTerm:
		hold = p.scale(0, 1, u)
	case FaultPartition:
		hold = p.scale(2, 6, u)
	}
	if kind == FaultLeader {
		node = -1
	}
	if !isOp(kind) {
		pick, count = 0, 0
	}
	return Fault{N: p.n, Kind: kind, Node: node, Hold: hold, Quiet: quiet, Pick: pick, Count: count}
}

// scale maps u in [0,1) to [lo, hi) TTLs.
func (p *planner) scale(lo, hi, u float64) time.Duration {
	return time.Duration((lo + (hi-lo)*u) * float64(p.ttl)).Round(10 * time.Millisecond)
}

// Budget is how long a fault is expected to take at most, recovery included; the suite
// injects one only when that much of the run is left.
func (f Fault) Budget(ttl time.Duration) time.Duration {
	b := f.Quiet + f.Hold + 3*ttl + 10*time.Second
	switch f.Kind {
	case FaultBucketDelete:
		b += bucketRecreateWait(ttl) + 30*time.Second // and maybe restarts
	case FaultSlowStop, FaultReload, FaultRelease, FaultDrain:
		b += slowStopDelay(ttl)
	}
	return b
}

// inject performs f on the cluster: the fault, its hold time and the end of it (restart,
// resume, heal). It does not wait for recovery.
func (s *suite) inject(ctx context.Context, f *Fault) error {
	c := s.c
	leader, err := s.workersLeader(ctx)
	if err != nil && f.Kind == FaultLeader {
		return err
	}
	if f.Kind == FaultLeader {
		n := c.NodeByName(leader)
		if n == nil {
			return fmt.Errorf("the workers stream leader %q is no node of this cluster", leader)
		}
		f.Node = n.Index()
	}
	n := c.Node(f.Node)
	f.NodeName = n.Name()
	f.Leader = leader == n.Name()
	if isOp(f.Kind) {
		f.Workers = s.pickWorkers(f)
	}
	if f.Leader && f.Kind != FaultLeader {
		s.printf("fault %s (it leads the workers stream)", f)
	} else {
		s.printf("fault %s", f)
	}
	f.Start = cluster.MonoNow()
	switch f.Kind {
	case FaultKill, FaultLeader:
		if err := n.Kill(); err != nil {
			return err
		}
		sleep(ctx, f.Hold)
		if err := n.Start(); err != nil {
			return err
		}
	case FaultPause:
		if err := n.Stop(); err != nil {
			return err
		}
		sleep(ctx, f.Hold)
		if err := n.Cont(); err != nil {
			return err
		}
	case FaultTerm:
		st, err := n.Term()
		if err != nil {
			return err
		}
		if st.Code != 0 {
			s.printf("  %s exited with %v on SIGTERM", n.Name(), st)
		}
		sleep(ctx, f.Hold)
		if err := n.Start(); err != nil {
			return err
		}
	case FaultPartition:
		s.net.Isolate(f.Node)
		sleep(ctx, f.Hold)
		s.net.Heal()
	case FaultReload, FaultSlowStop, FaultKVDelete, FaultKVPurge, FaultMarker, FaultBucketDelete, FaultRelease, FaultDrain:
		if err := s.injectOp(ctx, f, n); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown fault kind %q", f.Kind)
	}
	f.Healed = cluster.MonoNow()
	return ctx.Err()
}

// workersLeader finds the server leading the workers' KV stream, retrying for a while: a
// stream between leaders has none.
func (s *suite) workersLeader(ctx context.Context) (string, error) {
	var leader string
	var last error
	err := poll(ctx, 30*time.Second, func() bool {
		leader, last = s.c.StreamLeader(s.c.WorkersStream())
		return last == nil
	})
	if err != nil {
		return "", fmt.Errorf("no leader of %s: %w (last: %v)", s.c.WorkersStream(), err, last)
	}
	return leader, nil
}

// waitRecovered waits until every node runs, is not paused and is ready, and the workers
// stream has a leader with every replica current.
func (s *suite) waitRecovered(ctx context.Context, timeout time.Duration) error {
	var why string
	err := poll(ctx, timeout, func() bool {
		for _, n := range s.c.Nodes() {
			if !n.Running() {
				why = n.Name() + " is not running"
				return false
			}
			if !n.Ready() {
				why = n.Name() + " is not ready"
				return false
			}
		}
		info, err := s.c.StreamInfo(s.c.WorkersStream())
		if err != nil {
			why = err.Error()
			return false
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			why = s.c.WorkersStream() + " has no leader"
			return false
		}
		if len(info.Cluster.Replicas) != s.c.Len()-1 {
			why = fmt.Sprintf("%s has %d replicas besides the leader", s.c.WorkersStream(), len(info.Cluster.Replicas))
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				why = fmt.Sprintf("%s replica on %s is not current (lag %d)", s.c.WorkersStream(), r.Name, r.Lag)
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("%w: %s", err, why)
	}
	return nil
}

var errTimeout = errors.New("timed out")

// poll checks cond every 100 ms until it holds, timeout passes (errTimeout) or ctx ends.
func poll(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %v", errTimeout, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
