package ownership

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/natstest"
	"github.com/jetcoord/coordinator/kv"
)

func TestMembership(t *testing.T) {
	srv := natstest.Run(t)
	a := startNode(t, srv, "a", ConfigForTTL(testTTL), func(*Engine) {})
	b := startNode(t, srv, "b", ConfigForTTL(testTTL), func(*Engine) {})
	waitFor(t, "both members seen by a", 5*time.Second, func() bool { return len(a.e.Members()) == 2 })
	waitFor(t, "a ready", 5*time.Second, a.e.Ready)
	if m := a.e.Members(); m[0].Node != "a" || m[1].Node != "b" || m[1].Incarnation != b.e.Incarnation() || m[0].Capacity != 1 {
		t.Fatalf("members = %+v", m)
	}
	// A graceful leave deletes the record at once.
	_ = b.e.Close()
	waitFor(t, "b gone after Close", testTTL/2, func() bool { return len(a.e.Members()) == 1 })
	// A cut-off node's record expires.
	c := startNode(t, srv, "c", ConfigForTTL(testTTL), func(*Engine) {})
	waitFor(t, "c seen", 5*time.Second, func() bool { return len(a.e.Members()) == 2 })
	c.nc.Close()
	waitFor(t, "c expired", 5*testTTL, func() bool { return len(a.e.Members()) == 1 })
	if c.e.Ready() {
		waitFor(t, "c not ready once cut off", 2*testTTL, func() bool { return !c.e.Ready() })
	}
}

// A node record without a TTL (written by hand) is cleared once it went a TTL without a
// renewal, and a capacity past MaxWeight is taken as MaxWeight.
func TestGarbageNodeRecords(t *testing.T) {
	srv := natstest.Run(t)
	a := startNode(t, srv, "a", ConfigForTTL(testTTL), func(*Engine) {})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ghost := kv.NodeRecord{Node: "ghost", Incarnation: "x", Started: time.Now(), Renewed: time.Now(), Capacity: math.MaxInt64}
	if _, err := a.e.store.Nodes.Create(ctx, "ghost", ghost.Encode(), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ghost seen, capacity bounded", 5*time.Second, func() bool {
		for _, m := range a.e.Members() {
			if m.Node == "ghost" {
				return m.Capacity == MaxWeight
			}
		}
		return false
	})
	waitFor(t, "ghost cleared", 5*testTTL, func() bool { return len(a.e.Members()) == 1 })
	if _, err := a.e.store.Nodes.Get(ctx, "ghost"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("ghost record still in the bucket: %v", err)
	}
}
