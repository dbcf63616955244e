package cluster

import (
	"time"
)

// Status mirrors the Status type of cmd/coordinator (cmd/coordinator/status.go), the shape
// of `coordinator status --json` and of GET /status. That type lives in package main and
// cannot be imported; integration.TestStatusShape decodes the real output strictly into
// this copy, so the two cannot drift unnoticed. Fields are only ever added there, never
// renamed or removed.
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
