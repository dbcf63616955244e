package ownership

import (
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/natstest"
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
