package ownership

import (
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/natstest"
)

// A node that crashed and comes back under the same name (a new incarnation) runs its
// workers again: the claims bound to its earlier incarnation's lease are proven dead by
// its own unbroken run of record writes, which no other node's view or tombstone can give
// (the key holds the live record of the new incarnation).
func TestRestartedNodeTakesBackItsClaims(t *testing.T) {
	srv := natstest.Run(t)
	cfg := ConfigForTTL(2 * time.Second)
	ws := names(20)
	f := newFleet()
	first := startNode(t, srv, "a", cfg, f.register(ws, "a"))
	waitFor(t, "a to run everything", 30*time.Second, func() bool { _, n := f.perNode(t, ws); return n == len(ws) })
	// a crashes (no release) and comes back at once, while its old record and claims are
	// still live: its old workers are fenced on their own clock meanwhile.
	first.nc.Close()
	crashed := time.Now()
	startNode(t, srv, "a", cfg, f.register(ws, "a"))
	waitFor(t, "the restarted a to run everything", 20*cfg.TTL, func() bool {
		f.perNode(t, ws) // fails the test if a worker runs twice
		return f.startedSince(ws, crashed)
	})
	t.Logf("all %d workers running again %v after the crash", len(ws), time.Since(crashed).Round(time.Millisecond))
	f.checkNoOverlap(t, ws)
}

// startedSince reports whether every worker runs in a run that started after t.
func (f *fleet) startedSince(names []string, t time.Time) bool {
	for _, n := range names {
		l := f.of(n).running()
		if len(l) != 1 || !l[0].start.After(t) {
			return false
		}
	}
	return true
}
