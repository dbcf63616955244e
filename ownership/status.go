package ownership

import (
	"context"
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

// WorkerStatus is one claim.
type WorkerStatus struct {
	Worker   string    `json:"worker"`
	Node     string    `json:"node"`
	Token    uint64    `json:"token"`
	Since    time.Time `json:"since"`
	Renewed  time.Time `json:"renewed"`
	State    string    `json:"state"` // running, stopping, or unknown (a value that is not a claim)
	Revision uint64    `json:"revision"`
	Error    string    `json:"error,omitempty"`
	// Checkpoint is when the worker last saved state (ownership.Lease.SaveState); absent if never.
	Checkpoint *time.Time `json:"checkpoint,omitempty"`
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
	return s, nil
}

// Worker returns the claim of worker and whether there is one.
func (s Status) Worker(worker string) (WorkerStatus, bool) {
	for _, w := range s.Workers {
		if w.Worker == worker {
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
