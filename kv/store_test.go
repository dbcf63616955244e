package kv

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jetcoord/coordinator/internal/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openStore(t *testing.T) *Store {
	t.Helper()
	srv := natstest.Run(t)
	nc := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, nc, Options{Namespace: "t"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestOpenIsIdempotent(t *testing.T) {
	srv := natstest.Run(t)
	nc := srv.Connect()
	for i := 0; i < 2; i++ {
		s, err := Open(ctxT(t), nc, Options{Namespace: "t"})
		if err != nil {
			t.Fatalf("Open #%d: %v", i, err)
		}
		if got := s.Workers.Name(); got != "t_workers" {
			t.Fatalf("workers bucket = %q", got)
		}
	}
	if _, err := Open(ctxT(t), nc, Options{Namespace: "a.b"}); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("Open with dotted namespace: %v, want ErrInvalidName", err)
	}
}

func TestCompareAndSet(t *testing.T) {
	s := openStore(t)
	ctx := ctxT(t)
	b := s.Workers
	rev, err := b.Create(ctx, "w", []byte("a"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "w", []byte("b"), time.Minute); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	rev2, err := b.Update(ctx, "w", []byte("a2"), rev, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Update(ctx, "w", []byte("stale"), rev, time.Minute); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale Update: %v, want ErrConflict", err)
	}
	if _, err := b.Update(ctx, "w", []byte("stale"), rev, 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale Update without TTL: %v, want ErrConflict", err)
	}
	if err := b.Delete(ctx, "w", rev); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale Delete: %v, want ErrConflict", err)
	}
	if err := b.Delete(ctx, "w", rev2); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "w"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after delete: %v, want ErrNotFound", err)
	}
	rev3, err := b.Create(ctx, "w", []byte("c"), time.Minute)
	if err != nil {
		t.Fatalf("Create over delete marker: %v", err)
	}
	if rev3 <= rev2 {
		t.Fatalf("revision went backwards: %d after %d", rev3, rev2)
	}
}

// An entry written with a TTL expires unless renewed, and a renewal carries the TTL on.
func TestTTLExpiryAndRenewal(t *testing.T) {
	s := openStore(t)
	ctx := ctxT(t)
	b := s.Workers
	w, err := b.Watch(ctx, "gone", "kept")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	<-w.Synced()

	if _, err := b.Create(ctx, "gone", []byte("x"), time.Second); err != nil {
		t.Fatal(err)
	}
	rev, err := b.Create(ctx, "kept", []byte("x"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	expired := false
	deadline := time.After(10 * time.Second)
	renew := time.NewTicker(300 * time.Millisecond)
	defer renew.Stop()
	for !expired {
		select {
		case c := <-w.Changes():
			if c.Op == OpExpire {
				if c.Key != "gone" {
					t.Fatalf("%q expired although renewed", c.Key)
				}
				expired = true
			}
		case <-renew.C:
			if rev, err = b.Update(ctx, "kept", []byte("y"), rev, time.Second); err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatal("no expiry marker within 10s of a 1s TTL")
		}
	}
	if _, err := b.Get(ctx, "kept"); err != nil {
		t.Fatalf("renewed entry: %v", err)
	}
	if _, err := b.Create(ctx, "gone", []byte("new"), time.Second); err != nil {
		t.Fatalf("Create over expiry marker: %v", err)
	}
	// Stop renewing: the renewed entry expires too, so the renewal kept a TTL.
	for {
		select {
		case c := <-w.Changes():
			if c.Op == OpExpire && c.Key == "kept" {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatal("renewed entry never expired: Update lost its TTL")
		}
	}
}

func TestWatchOps(t *testing.T) {
	s := openStore(t)
	ctx := ctxT(t)
	b := s.Workers
	rev, _ := b.Create(ctx, "pre", []byte("1"), 0)
	w, err := b.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	next := func() Change {
		t.Helper()
		select {
		case c := <-w.Changes():
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("no change")
		}
		return Change{}
	}
	if c := next(); c.Key != "pre" || c.Op != OpPut || c.Revision != rev {
		t.Fatalf("initial = %+v", c)
	}
	<-w.Synced()
	if err := b.Delete(ctx, "pre", rev); err != nil {
		t.Fatal(err)
	}
	if c := next(); c.Key != "pre" || c.Op != OpDelete {
		t.Fatalf("after delete = %+v", c)
	}
	w.Stop()
	w.Stop()
	if _, ok := <-w.Changes(); ok {
		t.Fatal("Changes not closed after Stop")
	}
}

func TestClaimRecord(t *testing.T) {
	s := openStore(t)
	ctx := ctxT(t)
	c := Claim{Worker: "billing", Node: "node-a", Incarnation: "i1", TTL: Duration(10 * time.Second), State: StateRunning}
	if _, err := s.Workers.Create(ctx, "billing", c.Encode(), 0); err != nil {
		t.Fatal(err)
	}
	got, err := s.Workers.GetClaim(ctx, "billing")
	if err != nil || got.Err != nil {
		t.Fatalf("GetClaim: %v %v", err, got.Err)
	}
	if got.Claim.Node != "node-a" || got.Claim.TTL != Duration(10*time.Second) || got.Claim.Meta == nil {
		t.Fatalf("claim = %+v", got.Claim)
	}
	if _, err := s.Workers.Create(ctx, "junk", []byte("not json"), 0); err != nil {
		t.Fatal(err)
	}
	junk, err := s.Workers.GetClaim(ctx, "junk")
	if err != nil || !errors.Is(junk.Err, ErrMalformed) {
		t.Fatalf("junk claim: %v %v, want ErrMalformed", err, junk.Err)
	}
	all, err := s.Workers.ListClaims(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("ListClaims = %v, %v", all, err)
	}
}

func TestUnavailable(t *testing.T) {
	srv := natstest.Run(t)
	nc := srv.Connect()
	s, err := Open(ctxT(t), nc, Options{Namespace: "t"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := s.Workers.Create(ctx, "w", []byte("x"), time.Second); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Create with server down: %v, want ErrUnavailable", err)
	}
}

func TestBindOnlyCreatesNothing(t *testing.T) {
	srv := natstest.Run(t)
	nc := srv.Connect()
	if _, err := Open(ctxT(t), nc, Options{Namespace: "t", BindOnly: true}); !errors.Is(err, ErrBucketNotFound) {
		t.Fatalf("BindOnly on an empty server = %v, want ErrBucketNotFound", err)
	}
	if _, err := Open(ctxT(t), nc, Options{Namespace: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctxT(t), nc, Options{Namespace: "t", BindOnly: true}); err != nil {
		t.Fatalf("BindOnly after creation: %v", err)
	}
}

// Reads that decide something go to the stream leader: a direct get may be answered by a
// lagging follower (issue 12, case 4).
func TestReadsAskTheStreamLeader(t *testing.T) {
	srv := natstest.Run(t)
	s, err := Open(ctxT(t), srv.Connect(), Options{Namespace: "t"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if _, err := s.Workers.Create(ctx, "w", Claim{Worker: "w", Node: "a"}.Encode(), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.State.SaveState(ctx, StateRecord{Worker: "w", Node: "a", Token: 1, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	spy := srv.Connect()
	direct, err := spy.SubscribeSync("$JS.API.DIRECT.GET.>")
	if err != nil {
		t.Fatal(err)
	}
	leader, err := spy.SubscribeSync("$JS.API.STREAM.MSG.GET.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Workers.GetClaim(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.State.GetState(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	if c, err := s.Workers.Latest(ctx, "w"); err != nil || c.Op != OpPut {
		t.Fatalf("Latest = %+v, %v", c, err)
	}
	if _, err := s.Workers.GetClaim(ctx, "none"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetClaim of a missing key = %v, want ErrNotFound", err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	// The spy's copies travel on its own connection: wait for them (a flush of the spy
	// does not order them after the reads' requests).
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n, _, _ := leader.Pending(); n >= 4 {
			break
		}
	}
	if n, _, _ := direct.Pending(); n != 0 {
		t.Errorf("%d reads were direct gets, which a follower may answer", n)
	}
	if n, _, _ := leader.Pending(); n != 4 {
		t.Errorf("%d reads went to the stream leader, want 4", n)
	}
}

// A release leaves the claim, marked released, as the body of its delete marker; watchers
// and Latest see it, a plain delete carries none.
func TestReleaseCarriesARecord(t *testing.T) {
	s := openStore(t)
	ctx := ctxT(t)
	c := Claim{Worker: "w", Node: "a", Term: "t1", State: StateRunning}
	rev, err := s.Workers.Create(ctx, "w", c.Encode(), 0)
	if err != nil {
		t.Fatal(err)
	}
	c.State = StateReleased
	mrev, err := s.Workers.Release(ctx, "w", rev, c.Encode())
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Workers.Latest(ctx, "w")
	if err != nil || got.Op != OpDelete || got.Revision != mrev {
		t.Fatalf("Latest after release = %+v, %v; want the marker at revision %d", got, err, mrev)
	}
	if r, ok := DecodeRelease("w", got.Value); !ok || r.Term != "t1" {
		t.Fatalf("release record = %+v %v", r, ok)
	}
	if _, err := s.Workers.Get(ctx, "w"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after release = %v, want ErrNotFound", err)
	}
	rev2, err := s.Workers.Create(ctx, "w", c.Encode(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Workers.Delete(ctx, "w", rev2); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Workers.Latest(ctx, "w")
	if _, ok := DecodeRelease("w", got.Value); ok || got.Op != OpDelete {
		t.Fatalf("a plain delete reads as a release: %+v", got)
	}
}

func TestLatestDirectSeesMarkers(t *testing.T) {
	s := openStore(t)
	ctx := ctxT(t)
	if _, err := s.Workers.LatestDirect(ctx, "w"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LatestDirect of a key never written = %v, want ErrNotFound", err)
	}
	c := Claim{Worker: "w", Node: "a", Term: "t1"}
	rev, err := s.Workers.Create(ctx, "w", c.Encode(), 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Workers.LatestDirect(ctx, "w")
	if err != nil || got.Op != OpPut || got.Revision != rev {
		t.Fatalf("LatestDirect = %+v, %v", got, err)
	}
	if err := s.Workers.Delete(ctx, "w", rev); err != nil {
		t.Fatal(err)
	}
	got, err = s.Workers.LatestDirect(ctx, "w")
	if err != nil || got.Op != OpDelete || got.Revision != rev+1 {
		t.Fatalf("LatestDirect after delete = %+v, %v", got, err)
	}
}

// TestLastRevision: the bucket's last revision bounds every revision written, and a
// bucket recreated above a floor answers the floor before anything is written to it.
func TestLastRevision(t *testing.T) {
	s := openStore(t)
	ctx := ctxT(t)
	b := s.Workers
	if got, err := b.LastRevision(ctx); err != nil || got != 0 {
		t.Fatalf("LastRevision of an empty bucket = %d, %v; want 0", got, err)
	}
	rev, err := b.Update(ctx, "w", []byte("a"), 0, time.Minute) // 0: nothing kept for the key
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Update(ctx, "w", []byte("b"), 0, time.Minute); !errors.Is(err, ErrConflict) {
		t.Fatalf("Update at 0 of a written key = %v, want ErrConflict", err)
	}
	mrev, err := b.Release(ctx, "w", rev, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.LastRevision(ctx); err != nil || got != mrev {
		t.Fatalf("LastRevision = %d, %v; want %d", got, err, mrev)
	}
	if _, err := b.Update(ctx, "w", []byte("c"), mrev, time.Minute); err != nil {
		t.Fatalf("Update at the delete marker's revision: %v", err)
	}
	if err := s.js.DeleteStream(ctx, "KV_"+b.Name()); err != nil {
		t.Fatal(err)
	}
	first, _, err := s.EnsureWorkers(ctx, 1000)
	if err != nil || first != 1001 {
		t.Fatalf("EnsureWorkers = %d, %v", first, err)
	}
	if got, err := b.LastRevision(ctx); err != nil || got != 1000 {
		t.Fatalf("LastRevision of a bucket recreated above 1000 = %d, %v; want 1000", got, err)
	}
}
