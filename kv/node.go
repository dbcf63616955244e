package kv

import (
	"encoding/json"
	"fmt"
	"time"
)

// NodeRecord is a node's membership entry in the nodes bucket, kept alive with the node
// lease TTL. Its absence means the node is gone.
type NodeRecord struct {
	Node        string    `json:"node"`
	Incarnation string    `json:"incarnation"`
	Addresses   []string  `json:"addresses,omitempty"`
	Version     string    `json:"version,omitempty"`
	Started     time.Time `json:"started"`
	Renewed     time.Time `json:"renewed"`
	// Capacity is the node's placement weight (default 1).
	Capacity int `json:"capacity"`
	// Draining nodes hold and claim no workers.
	Draining bool `json:"draining,omitempty"`
	// Workers is a digest of the names the node registered. Nodes with the same digest
	// compute the same placement, so an owner hands a worker to its preferred node only when
	// that node registered it too.
	Workers string `json:"workers,omitempty"`
}

// Encode returns the record's JSON.
func (r NodeRecord) Encode() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("kv: encoding node record: %v", err))
	}
	return b
}

// DecodeNode parses a node record; a value that is not one returns an error wrapping
// ErrMalformed.
func DecodeNode(key string, b []byte) (NodeRecord, error) {
	var r NodeRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return NodeRecord{}, fmt.Errorf("%w: node %q: %v", ErrMalformed, key, err)
	}
	if r.Node != key {
		return NodeRecord{}, fmt.Errorf("%w: node %q: record names node %q", ErrMalformed, key, r.Node)
	}
	if r.Capacity <= 0 {
		r.Capacity = 1
	}
	return r, nil
}
