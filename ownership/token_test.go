package ownership

import (
	"context"
	"testing"

	"github.com/jetcoord/coordinator/internal/natstest"
	"github.com/jetcoord/coordinator/kv"
)

// TestClaimShowsRealTokenAtOnce: the first record of every term carries its real token —
// what the owner's Lease.Token says, nonzero, above every earlier term's — for a name
// never claimed, after a release and after a claim deleted by hand.
func TestClaimShowsRealTokenAtOnce(t *testing.T) {
	srv := natstest.Run(t)
	cfg := ConfigForTTL(testTTL)
	var r, r2 runs
	w := nameFor("w", "a", "a")
	a := startNode(t, srv, "a", cfg, func(e *Engine) {
		_ = e.Register(w, r.worker("a"))
	})
	raw := claimsBucket(t, srv)
	// read returns the claim's token as a plain reader sees it, and its revision.
	read := func(name string) (uint64, uint64) {
		t.Helper()
		e, err := raw.Get(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		c, err := kv.DecodeClaim(name, e.Value())
		if err != nil {
			t.Fatal(err)
		}
		return c.Token, e.Revision()
	}
	check := func(what string, rs *runs, name string, n int, above uint64) (uint64, uint64) {
		t.Helper()
		waitFor(t, what, 3*testTTL, func() bool { l := rs.running(); return len(l) == 1 && len(rs.snapshot()) == n })
		want := rs.running()[0].token
		got, rev := read(name)
		if got != want || got == 0 || got > rev || got <= above {
			t.Fatalf("%s: the claim's first record says token %d (revision %d); the owner's lease says %d; want that, nonzero, at most the revision and above %d",
				what, got, rev, want, above)
		}
		return got, rev
	}
	t1, _ := check("the first term (never claimed)", &r, w, 1, 0)

	if err := a.e.Unregister(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	if err := a.e.Register(w, r.worker("a")); err != nil {
		t.Fatal(err)
	}
	t2, _ := check("the term after a release", &r, w, 2, t1)

	if err := raw.Delete(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	_, rev3 := check("the term after a claim deleted by hand", &r, w, 3, t2)
	r.checkNoOverlap(t)

	// A name never claimed in a bucket that has seen writes: above every revision so far.
	w2 := nameFor("v", "a", "a")
	if err := a.e.Register(w2, r2.worker("a")); err != nil {
		t.Fatal(err)
	}
	check("a second name, never claimed", &r2, w2, 1, rev3)
}
