package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// TestStatusShape: `coordinator status --json` decodes strictly into the documented Status
// type (cluster.Status mirrors cmd/coordinator's), every documented key is there, and the
// values agree with what runs. A new field fails the strict decode on purpose: add it to
// cluster.Status. A renamed or removed one fails the key check: that breaks scripts.
func TestStatusShape(t *testing.T) {
	t.Parallel()
	c := startCluster(t, cluster.Options{TTL: 2 * time.Second, Workers: recorded("alpha", "beta")})
	settle(t, c, "alpha", "beta")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.Node(1).CLI(ctx, "status", "--json")
	if err != nil {
		t.Fatal(err)
	}

	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	var s cluster.Status
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("status --json does not decode strictly into cluster.Status: %v\n%s", err, out)
	}

	var top map[string]json.RawMessage
	var raw struct {
		Workers []map[string]json.RawMessage `json:"workers"`
		Nodes   []map[string]json.RawMessage `json:"nodes"`
	}
	if err := errors.Join(json.Unmarshal(out, &top), json.Unmarshal(out, &raw)); err != nil {
		t.Fatal(err)
	}
	hasKeys(t, "status", top, "namespace", "time", "workers", "nodes")
	for _, w := range raw.Workers {
		hasKeys(t, "worker", w, "worker", "node", "token", "since", "renewed", "state", "revision")
	}
	for _, n := range raw.Nodes {
		hasKeys(t, "node", n, "node", "incarnation", "version", "started", "renewed", "capacity", "draining", "workers", "addresses")
	}

	if s.Namespace != "coord" {
		t.Errorf("namespace %q", s.Namespace)
	}
	if d := time.Since(s.Time); d < -time.Minute || d > time.Minute {
		t.Errorf("time %v is %v away from now", s.Time, d)
	}
	var names []string
	total := 0
	for _, n := range s.Nodes {
		names = append(names, n.Node)
		total += n.Workers
		if n.Incarnation == "" || n.Version == "" || n.Capacity != 1 || n.Draining || n.Started.IsZero() || n.Renewed.Before(n.Started) {
			t.Errorf("node record %+v", n)
		}
		if node := c.NodeByName(n.Node); node == nil || !slices.Contains(n.Addresses, node.ClientURL()) {
			t.Errorf("node %s addresses %v, want its client URL among them", n.Node, n.Addresses)
		}
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "n0,n1,n2" {
		t.Errorf("nodes %v, want n0,n1,n2", names)
	}
	if total != 2 || len(s.Workers) != 2 {
		t.Errorf("%d workers listed, %d counted on nodes; want 2", len(s.Workers), total)
	}
	for _, w := range s.Workers {
		r, ok := currentRun(c, w.Worker)
		if !ok {
			t.Errorf("%s does not run", w.Worker)
			continue
		}
		if w.Node != r.Node || w.Token != r.Token || w.State != "running" || w.Error != "" {
			t.Errorf("status %+v, recorder run %v", w, r)
		}
		if w.Revision < w.Token || w.Since.After(w.Renewed) || w.Since.IsZero() {
			t.Errorf("claim %+v: want revision ≥ token and since ≤ renewed", w)
		}
	}

	// /status of another node shows the same claims.
	h, err := c.Node(2).Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range s.Workers {
		if hw, ok := h.Worker(w.Worker); !ok || hw.Node != w.Node || hw.Token != w.Token {
			t.Errorf("/status on n2: %+v; status --json on n1: %+v", hw, w)
		}
	}

	// The table for people has its two headers.
	text, err := c.Node(0).CLI(ctx, "status")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(text, []byte("WORKER")) || !bytes.Contains(text, []byte("NODE")) || !bytes.Contains(text, []byte("alpha")) {
		t.Errorf("status table:\n%s", text)
	}
}

func hasKeys(t *testing.T, what string, m map[string]json.RawMessage, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("%s object has no %q key: %v", what, k, keysOf(m))
		}
	}
}

func keysOf(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
