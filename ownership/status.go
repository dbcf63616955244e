package ownership

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jetcoord/coordinator/kv"
)

// Status is a cluster's claims and nodes: the shape of `coordinator status --json` and of
// the daemon's /status. Fields are only ever added, never renamed or removed.
type Status struct {
	Namespace string         `json:"namespace"`
	Time      time.Time      `json:"time"`
	Workers   []WorkerStatus `json:"workers"`
	Nodes     []NodeStatus   `json:"nodes"`
}

// WorkerStatus is one claim, with what its owner reports of the worker's runs.
type WorkerStatus struct {
	Worker  string    `json:"worker"`
	Node    string    `json:"node"`
	Token   uint64    `json:"token"`
	Since   time.Time `json:"since"`
	Renewed time.Time `json:"renewed"`
	// State is what the worker is doing: one of the State* constants (starting, running,
	// backing off, failing, exited, stopping, owner unknown), or the claim's own state when
	// the owner serves no runtime (a library node without Runtime.Serve), or "unknown" for a
	// value that is not a claim or an owner that did not answer.
	State    string `json:"state"`
	Revision uint64 `json:"revision"`
	Error    string `json:"error,omitempty"`
	// Checkpoint is when the worker last saved state (ownership.Lease.SaveState); absent if never.
	Checkpoint *time.Time `json:"checkpoint,omitempty"`
	// ClaimState is the state written in the claim (running, stopping).
	ClaimState string `json:"claim_state,omitempty"`
	// StateSince is when the worker entered State, as its owner reports it.
	StateSince *time.Time `json:"state_since,omitempty"`
	// Restarts counts the runs after the first in this term; Failures the failed runs in a row.
	Restarts int `json:"restarts"`
	Failures int `json:"failures"`
	// LastExit is how the last run ended (code, error, time), if one did in this node's life.
	LastExit *Exit `json:"last_exit,omitempty"`
	// Detail explains an "owner unknown" or "unknown" state.
	Detail string `json:"detail,omitempty"`
}

// NodeStatus is one live node.
type NodeStatus struct {
	Node        string    `json:"node"`
	Incarnation string    `json:"incarnation"`
	Version     string    `json:"version"`
	Started     time.Time `json:"started"`
	Renewed     time.Time `json:"renewed"`
	Capacity    int       `json:"capacity"`
	Draining    bool      `json:"draining"`
	Workers     int       `json:"workers"`
	Addresses   []string  `json:"addresses,omitempty"`
}

// ReadStatus reads every claim, checkpoint and live node of the store: what `coordinator
// status` prints. It returns kv.ErrUnavailable (wrapped) when the store did not answer.
func ReadStatus(ctx context.Context, st *kv.Store) (Status, error) {
	s := Status{Namespace: st.Namespace(), Time: time.Now().UTC(), Workers: []WorkerStatus{}, Nodes: []NodeStatus{}}
	claims, err := st.Workers.ListClaims(ctx)
	if err != nil {
		return s, fmt.Errorf("reading claims: %w", err)
	}
	count := map[string]int{}
	for _, c := range claims {
		ws := WorkerStatus{Worker: c.Worker, Revision: c.Revision}
		if c.Err != nil {
			ws.State, ws.Error = "unknown", c.Err.Error()
		} else {
			ws.Node, ws.Token, ws.Since, ws.Renewed, ws.State = c.Claim.Node, c.Token(), c.Claim.Acquired, c.Claim.Renewed, c.Claim.State
			count[c.Claim.Node]++
		}
		s.Workers = append(s.Workers, ws)
	}
	sort.Slice(s.Workers, func(i, j int) bool { return s.Workers[i].Worker < s.Workers[j].Worker })
	if keys, err := st.State.Keys(ctx); err == nil {
		saved := map[string]time.Time{}
		for _, k := range keys {
			if rec, _, err := st.State.GetState(ctx, k); err == nil {
				saved[k] = rec.Saved
			}
		}
		for i := range s.Workers {
			if t, ok := saved[s.Workers[i].Worker]; ok {
				s.Workers[i].Checkpoint = &t
			}
		}
	}
	keys, err := st.Nodes.Keys(ctx)
	if err != nil {
		return s, fmt.Errorf("reading nodes: %w", err)
	}
	for _, k := range keys {
		e, err := st.Nodes.Get(ctx, k)
		if err != nil {
			continue // expired between the listing and the read
		}
		r, err := kv.DecodeNode(k, e.Value)
		if err != nil {
			continue
		}
		s.Nodes = append(s.Nodes, NodeStatus{Node: r.Node, Incarnation: r.Incarnation, Version: r.Version, Started: r.Started,
			Renewed: r.Renewed, Capacity: r.Capacity, Draining: r.Draining, Workers: count[r.Node], Addresses: r.Addresses})
	}
	sort.Slice(s.Nodes, func(i, j int) bool { return s.Nodes[i].Node < s.Nodes[j].Node })
	s.mergeRuntime(ctx, st)
	return s, nil
}

// runtimeTimeout bounds the wait for each node's runtime answer.
const runtimeTimeout = time.Second

// mergeRuntime asks every live node what its workers are doing and sets each claim's State
// from its owner's answer, so that a claim never passes for a running worker by itself.
func (s *Status) mergeRuntime(ctx context.Context, st *kv.Store) {
	nodes := make([]string, 0, len(s.Nodes))
	live := map[string]NodeStatus{}
	for _, n := range s.Nodes {
		nodes = append(nodes, n.Node)
		live[n.Node] = n
	}
	answers := map[string]runtimeAnswer{}
	if st.Conn() != nil && len(nodes) > 0 {
		answers = readRuntimes(ctx, st.Conn(), st.Namespace(), nodes, runtimeTimeout)
	}
	for i := range s.Workers {
		w := &s.Workers[i]
		if w.Error != "" {
			continue
		}
		w.ClaimState = w.State
		n, ok := live[w.Node]
		if !ok {
			w.State, w.Detail = StateOwnerUnknown, fmt.Sprintf("node %q is not a live member (no record in %s_nodes): no node runs this claim", w.Node, s.Namespace)
			continue
		}
		a := answers[w.Node]
		switch {
		case errors.Is(a.err, ErrNoRuntime):
			continue // an older node: the claim is all there is to say
		case a.err != nil:
			w.State, w.Detail = "unknown", fmt.Sprintf("node %q did not report its workers: %v", w.Node, a.err)
			continue
		case a.rt.Incarnation != "" && n.Incarnation != "" && a.rt.Incarnation != n.Incarnation:
			w.State, w.Detail = "unknown", fmt.Sprintf("node %q answered from another incarnation", w.Node)
			continue
		}
		rt, ok := a.rt.Worker(w.Worker)
		switch {
		case ok && rt.State == "":
			continue // the engine has no Runtime (SetRuntime): the claim is all there is to say
		case !ok:
			w.State, w.Detail = StateOwnerUnknown, fmt.Sprintf("node %q does not register %q", w.Node, w.Worker)
			continue
		case rt.Token != w.Token && w.ClaimState == kv.StateStopping:
			w.State = StateStopping // stopped; the release is on its way
			continue
		case rt.Token != w.Token && rt.State == StateStandby && a.rt.Time.Sub(w.Since) < freshClaim:
			// Claimed a moment ago; the worker function is about to start. Both times are
			// the owner's clock.
			w.State = StateStarting
			continue
		case rt.Token != w.Token:
			w.State, w.Detail = StateOwnerUnknown, fmt.Sprintf("node %q runs no term with token %d (%s)", w.Node, w.Token, rt.State)
			continue
		}
		w.State, w.Restarts, w.Failures, w.LastExit = rt.State, rt.Restarts, rt.Failures, rt.LastExit
		since := rt.Since
		w.StateSince = &since
		if w.ClaimState == kv.StateStopping && rt.State != StateStopping {
			w.State = StateStopping
		}
	}
	// Registered names that nobody holds: all nodes draining, a handoff in flight, or
	// nothing can claim.
	claimed := map[string]bool{}
	for _, w := range s.Workers {
		claimed[w.Worker] = true
	}
	registered := map[string]int{}
	for _, a := range answers {
		if a.err != nil {
			continue
		}
		for _, w := range a.rt.Workers {
			if !claimed[w.Worker] {
				registered[w.Worker]++
			}
		}
	}
	for name, n := range registered {
		s.Workers = append(s.Workers, WorkerStatus{Worker: name, State: StateUnclaimed,
			Detail: fmt.Sprintf("registered on %d live node(s); none holds a claim", n)})
	}
	sort.Slice(s.Workers, func(i, j int) bool { return s.Workers[i].Worker < s.Workers[j].Worker })
}

// freshClaim: a claim younger than this whose owner has not started the worker yet shows
// as starting rather than as owner unknown.
const freshClaim = 5 * time.Second

// Worker returns the claim of worker and whether there is one (an unclaimed row is not).
func (s Status) Worker(worker string) (WorkerStatus, bool) {
	for _, w := range s.Workers {
		if w.Worker == worker && w.State != StateUnclaimed {
			return w, true
		}
	}
	return WorkerStatus{}, false
}

// Node returns the record of node and whether it is live.
func (s Status) Node(node string) (NodeStatus, bool) {
	for _, n := range s.Nodes {
		if n.Node == node {
			return n, true
		}
	}
	return NodeStatus{}, false
}
