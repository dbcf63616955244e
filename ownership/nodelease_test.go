package ownership

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetcoord/coordinator/internal/natstest"
	"github.com/jetcoord/coordinator/kv"
)

// streamLast returns the last sequence of the stream of bucket ("workers", "nodes"): the
// number of writes it has taken so far.
func streamLast(t *testing.T, js jetstream.JetStream, bucket string) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), "KV_t_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().State.LastSeq
}

func plainJS(t *testing.T, srv *natstest.Server) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestHeldClaimsCostO1Writes: a node holding 1,000 workers writes O(1) records per
// RenewInterval — its node lease — not one per claim (issue 16).
func TestHeldClaimsCostO1Writes(t *testing.T) {
	srv := natstest.Run(t)
	ws := names(1000)
	cfg := ConfigForTTL(fleetTTL)
	m := &lossCounter{}
	e := startCounted(t, srv, "a", cfg, m, quiet)
	registerAll(t, []*Engine{e}, ws, m.owned.Load)
	js := plainJS(t, srv)
	w0, n0 := streamLast(t, js, "workers"), streamLast(t, js, "nodes")
	window := 5 * cfg.RenewInterval
	time.Sleep(window) // measuring what a window of time costs: nothing to poll for
	w1, n1 := streamLast(t, js, "workers"), streamLast(t, js, "nodes")
	t.Logf("holding %d workers for %v: %d claim writes, %d node lease writes", len(ws), window, w1-w0, n1-n0)
	if got := m.owned.Load(); got != int64(len(ws)) {
		t.Fatalf("owned %d of %d workers at the end", got, len(ws))
	}
	if w1-w0 > 2 || n1-n0 > 2*uint64(window/cfg.RenewInterval)+2 {
		t.Fatalf("%d claim writes and %d node writes in %v for %d held workers; want O(1) per RenewInterval (%v)",
			w1-w0, n1-n0, window, len(ws), cfg.RenewInterval)
	}
}

// TestClaimRefreshedBeforeServerTTL: a claim bound to the node lease needs no renewal, but
// the server expires it after ClaimTTL; the engine's refresh scan writes it again at about
// half of that, in the same term, so the worker outlives ClaimTTL without a restart.
func TestClaimRefreshedBeforeServerTTL(t *testing.T) {
	srv := natstest.Run(t)
	cfg := ConfigForTTL(time.Second) // the least TTL allowed
	cfg.ClaimTTL = 10 * cfg.TTL      // the least allowed: 10s
	var r runs
	name := "refreshed"
	a := startNode(t, srv, "a", cfg, func(e *Engine) { _ = e.Register(name, r.worker("a")) })
	waitFor(t, "a to run the worker", 5*time.Second, func() bool { return len(r.running()) == 1 })
	get := func() kv.ClaimEntry {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ce, err := a.e.claims.GetClaim(ctx, name)
		if err != nil {
			t.Fatalf("reading the claim: %v", err)
		}
		return ce
	}
	first := get()
	started := time.Now()
	refreshed := false
	// Past ClaimTTL: the claim would have expired on the server without a refresh.
	past := cfg.ClaimTTL + 2*time.Second
	for time.Since(started) < past {
		ce := get()
		if ce.Claim.Term != first.Claim.Term {
			t.Fatalf("the claim's term changed from %s to %s: the claim was lost", first.Claim.Term, ce.Claim.Term)
		}
		if ce.Revision > first.Revision {
			refreshed = true
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !refreshed {
		t.Fatalf("claim still at revision %d after %v: never written again", first.Revision, past)
	}
	if got := r.snapshot(); len(got) != 1 || got[0].node != "a" {
		t.Fatalf("runs = %+v, want one run on a, never restarted", got)
	}
}

// TestDeletedNodeRecordFencesAtOnce: an operator deletes the node record of a live owner.
// Its node lease is lost: the worker is fenced at once (ErrLeaseLost), and no node starts
// it before that; it then runs again, with a larger token.
func TestDeletedNodeRecordFencesAtOnce(t *testing.T) {
	srv := natstest.Run(t)
	var r runs
	w := nameFor("w", "a", "a", "b")
	startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, r.worker("a")) })
	waitFor(t, "a to run w", 5*time.Second, func() bool { return len(r.running()) == 1 })
	startNode(t, srv, "b", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, r.worker("b")) })
	js := plainJS(t, srv)
	nodes, err := js.KeyValue(context.Background(), "t_nodes")
	if err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	if err := nodes.Delete(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's worker to be fenced", testTTL, func() bool { return len(r.running()) == 0 || len(r.snapshot()) > 1 })
	first := r.snapshot()[0]
	if first.stop.IsZero() || !errors.Is(first.cause, ErrLeaseLost) {
		t.Fatalf("a's worker: stopped %v with %v; want fenced with ErrLeaseLost", first.stop, first.cause)
	}
	if took := first.stop.Sub(deleted); took > ConfigForTTL(testTTL).RenewDeadline {
		t.Errorf("fenced %v after the node record was deleted; want within a renewal", took)
	}
	waitFor(t, "w to run again", 4*testTTL, func() bool { return len(r.running()) == 1 && len(r.snapshot()) == 2 })
	r.checkNoOverlap(t)
	if l := r.snapshot(); l[1].token <= l[0].token {
		t.Fatalf("tokens %d then %d", l[0].token, l[1].token)
	}
}

// TestCrashedOwnerTakenOverAfterTTL: the owner is cut off (to the others, it crashed).
// The survivor takes its workers over only after a TTL without a renewal of its node
// lease, each with one write (issue 16: failover without a write storm).
func TestCrashedOwnerTakenOverAfterTTL(t *testing.T) {
	srv := natstest.Run(t)
	n := map[bool]int{false: 2000, true: 500}[raceEnabled]
	ws := names(n)
	cfg := ConfigForTTL(fleetTTL)
	cfg.ShutdownGrace = 2 * time.Second // a's Close at the end, cut off
	ma, mb := &lossCounter{}, &lossCounter{}
	a := startCounted(t, srv, "a", cfg, ma, quiet)
	registerAll(t, []*Engine{a}, ws, ma.owned.Load)
	b := startCounted(t, srv, "b", cfg, mb, quiet)
	for _, w := range ws {
		if err := b.Register(w, noopWorker); err != nil {
			t.Fatal(err)
		}
	}
	js := plainJS(t, srv)
	// Let b settle (it may rebalance some workers off a first), then cut a off.
	waitFor(t, "b to hold its share", time.Minute, func() bool { return mb.owned.Load() > int64(n/3) })
	time.Sleep(2 * cfg.RenewInterval) // a quiet moment: measuring the failover's writes alone
	onA := ma.owned.Load()
	w0 := streamLast(t, js, "workers")
	lastRenewal := a.memberRenewedAt()
	a.store.Conn().Close()
	waitFor(t, "b to run every worker", 2*time.Minute, func() bool { return mb.owned.Load() == int64(n) })
	took := time.Since(lastRenewal)
	writes := streamLast(t, js, "workers") - w0
	t.Logf("failover of %d workers: %d claim writes, done %v after a's last renewal", onA, writes, took.Round(time.Millisecond))
	if writes > uint64(onA)+uint64(onA)/10+5 {
		t.Errorf("failover of %d workers took %d claim writes; want about one each", onA, writes)
	}
	if took < cfg.TTL {
		t.Errorf("b took over %v after a's last renewal; want at least TTL %v", took, cfg.TTL)
	}
	if lost := mb.lost.Load(); lost != 0 {
		t.Errorf("b lost %d leases", lost)
	}
}

// TestUnboundClaimTimedByItsRevisions: a claim of an older version — no "lease" field,
// renewed one write at a time — stays its owner's while those writes go on, and is taken
// over a TTL after the last one.
func TestUnboundClaimTimedByItsRevisions(t *testing.T) {
	srv := natstest.Run(t)
	var r runs
	b := startNode(t, srv, "b", ConfigForTTL(testTTL), func(*Engine) {})
	raw := claimsBucket(t, srv)
	w := "old"
	c := kv.Claim{Worker: w, Node: "ghost", Incarnation: "i0", Term: "t0", Token: 1, TTL: kv.Duration(testTTL), State: kv.StateRunning}
	rev, err := raw.Create(context.Background(), w, c.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.e.Register(w, r.worker("b")); err != nil {
		t.Fatal(err)
	}
	// Renew it by hand for three TTLs: b must not take it.
	until := time.Now().Add(3 * testTTL)
	var last time.Time
	for time.Now().Before(until) {
		last = time.Now() // before the write: a contender sees it later
		c.Renewed = last.UTC()
		if rev, err = raw.Update(context.Background(), w, c.Encode(), rev); err != nil {
			t.Fatal(err)
		}
		if len(r.snapshot()) > 0 {
			t.Fatal("b took over a claim whose owner renews it")
		}
		time.Sleep(testTTL / 5)
	}
	waitFor(t, "b to take over", 3*testTTL, func() bool { return len(r.running()) == 1 })
	if took := r.snapshot()[0].start.Sub(last); took < testTTL {
		t.Fatalf("b took over %v after the last renewal; want at least TTL %v", took, testTTL)
	}
	got, err := raw.Get(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := kv.DecodeClaim(w, got.Value())
	if err != nil || nc.Lease != "t_nodes/b" || nc.Token != rev+1 || nc.Token != r.snapshot()[0].token {
		t.Fatalf("new claim %+v (%v); want bound to t_nodes/b with token %d (the old revision + 1)", nc, err, rev+1)
	}
}

func (e *Engine) memberRenewedAt() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.memberRenewed
}

// TestTakeoverLimiter: a burst goes at once, then takeovers are spaced at the rate.
func TestTakeoverLimiter(t *testing.T) {
	l := &takeoverLimiter{rate: 500, burst: 128}
	now := time.Unix(1000, 0)
	for i := 0; i < 128; i++ {
		if d := l.reserve(now); d != 0 {
			t.Fatalf("takeover %d of the burst waits %v", i, d)
		}
	}
	if d := l.reserve(now); d != 2*time.Millisecond {
		t.Fatalf("the first takeover past the burst waits %v, want 2ms (500/s)", d)
	}
	if d := l.reserve(now); d != 4*time.Millisecond {
		t.Fatalf("the second waits %v, want 4ms", d)
	}
	if d := l.reserve(now.Add(time.Second)); d != 0 {
		t.Fatalf("after a second, a takeover waits %v", d)
	}
}
