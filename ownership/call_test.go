package ownership

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/natstest"
	"github.com/jetcoord/coordinator/kv"
)

// echo answers with node and token and counts who answered which request.
type echo struct {
	mu       sync.Mutex
	answered map[string][]string // request -> nodes
}

func (x *echo) handler(node string) Handler {
	return JSONHandler(func(ctx context.Context, l *Lease, req []byte) ([]byte, error) {
		x.mu.Lock()
		x.answered[string(req)] = append(x.answered[string(req)], node)
		x.mu.Unlock()
		return []byte(`{"node":"` + node + `"}`), nil
	})
}

func holdUntilDone(ctx context.Context, l *Lease) error { <-ctx.Done(); return nil }

func TestCallReachesOwnerAndFollowsFailover(t *testing.T) {
	srv := natstest.Run(t)
	w := nameFor("svc", "a", "a", "b")
	x := &echo{answered: map[string][]string{}}
	a := startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, holdUntilDone, WithHandler(x.handler("a"))) })
	startNode(t, srv, "b", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, holdUntilDone, WithHandler(x.handler("b"))) })
	caller := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := Call(ctx, caller, "t", w, []byte(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Node != "a" || r.Token == 0 || string(r.Data) != `{"node":"a"}` {
		t.Fatalf("reply = %+v %s", r, r.Data)
	}
	// Non-JSON gets a clear error from the worker.
	_, err = Call(ctx, caller, "t", w, []byte("hello"))
	var ce *CallError
	if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "not JSON") {
		t.Fatalf("non-JSON call: %v", err)
	}
	// The owner is cut off; calls retry until b owns the worker and answers.
	a.nc.Close()
	r2, err := Call(ctx, caller, "t", w, []byte(`{"n":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if r2.Node != "b" || r2.Token <= r.Token {
		t.Fatalf("after failover: %+v, want b with a token above %d", r2, r.Token)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for req, nodes := range x.answered {
		if len(nodes) > 1 {
			t.Errorf("request %s answered by %v", req, nodes)
		}
	}
}

func TestCallWithNoOwner(t *testing.T) {
	srv := natstest.Run(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := Call(ctx, srv.Connect(), "t", "nobody", []byte("{}")); !errors.Is(err, ErrNoOwner) {
		t.Fatalf("Call with no owner = %v, want ErrNoOwner", err)
	}
}

func TestStateHandoff(t *testing.T) {
	srv := natstest.Run(t)
	w := nameFor("st", "a", "a", "b")
	type seen struct {
		node  string
		state string
		lease *Lease
	}
	got := make(chan seen, 10)
	worker := func(node string) WorkerFunc {
		return func(ctx context.Context, l *Lease) error {
			s, _, err := l.State()
			if err != nil {
				return err
			}
			got <- seen{node, string(s), l}
			<-ctx.Done()
			return nil
		}
	}
	a := startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, worker("a")) })
	first := <-got
	ctx := context.Background()
	if first.state != "" {
		t.Fatalf("first owner saw state %q", first.state)
	}
	if err := first.lease.SaveState(ctx, []byte("cursor=41")); err != nil {
		t.Fatal(err)
	}
	if err := first.lease.SaveState(ctx, []byte("cursor=42")); err != nil {
		t.Fatal(err)
	}
	if err := first.lease.SaveState(ctx, make([]byte, kv.MaxState+1)); !errors.Is(err, kv.ErrTooLarge) {
		t.Fatalf("oversized state: %v, want kv.ErrTooLarge", err)
	}
	b := startNode(t, srv, "b", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, worker("b")) })
	// Planned move: a releases, b starts with a's last checkpoint. (Released before a sees
	// b, the worker would rightly come back to a: no other node could take it.)
	waitFor(t, "a to see b", 10*time.Second, func() bool { return len(a.e.Members()) == 2 })
	if err := a.e.Release(ctx, w); err != nil {
		t.Fatal(err)
	}
	second := <-got
	if second.node != "b" || second.state != "cursor=42" {
		t.Fatalf("after the move: %+v", second)
	}
	// The old lease is over: it cannot save any more.
	if err := first.lease.SaveState(ctx, []byte("stale")); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("save by the old owner = %v, want ErrLeaseExpired", err)
	}
	if err := second.lease.SaveState(ctx, []byte("cursor=43")); err != nil {
		t.Fatal(err)
	}
	// Crash: b is cut off, a takes over with b's checkpoint.
	b.nc.Close()
	third := <-got
	if third.node != "a" || third.state != "cursor=43" {
		t.Fatalf("after the crash: %+v", third)
	}
	// A stale token is refused by the store itself, whatever the lease thinks.
	if err := third.lease.SaveState(ctx, []byte("cursor=44")); err != nil {
		t.Fatal(err)
	}
	err := a.e.store.State.SaveState(ctx, kv.StateRecord{Worker: w, Node: "b", Token: second.lease.Token(), Data: []byte("old")})
	if !errors.Is(err, kv.ErrStaleToken) {
		t.Fatalf("save with an old token = %v, want kv.ErrStaleToken", err)
	}
}

// An owner whose lease ran out while its renew loop was stuck — as in a paused process —
// neither answers calls nor saves state once another node owns the worker.
func TestStaleOwnerCannotAnswerOrSave(t *testing.T) {
	srv := natstest.Run(t)
	w := nameFor("stale", "a", "a", "b")
	x := &echo{answered: map[string][]string{}}
	block := make(chan struct{})
	defer close(block)
	var blocked sync.Once
	var armed atomic.Bool // block the node lease's renewals once a runs the worker
	leases := make(chan *Lease, 4)
	hold := func(ctx context.Context, l *Lease) error { leases <- l; <-ctx.Done(); return nil }
	startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) {
		e.testBeforeRenew = func(string) {
			stuck := false
			if armed.Load() {
				blocked.Do(func() { stuck = true })
			}
			if stuck {
				<-block
			}
		}
		_ = e.Register(w, hold, WithHandler(x.handler("a")))
	})
	old := <-leases
	armed.Store(true)
	startNode(t, srv, "b", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, hold, WithHandler(x.handler("b"))) })
	cur := <-leases
	if cur.Node() != "b" {
		t.Fatalf("second lease on %s", cur.Node())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 5; i++ {
		r, err := Call(ctx, srv.Connect(), "t", w, []byte(fmt.Sprintf(`{"i":%d}`, i)))
		if err != nil || r.Node != "b" {
			t.Fatalf("call %d: %+v %v", i, r, err)
		}
	}
	if err := old.SaveState(ctx, []byte("stale")); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("stale SaveState = %v, want ErrLeaseExpired", err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for req, nodes := range x.answered {
		if len(nodes) != 1 || nodes[0] != "b" {
			t.Errorf("request %s answered by %v", req, nodes)
		}
	}
}

// A worker without a handler answers at once with an error that says so, instead of
// leaving the caller to wait for its context to end.
func TestCallWithoutHandlerFailsAtOnce(t *testing.T) {
	srv := natstest.Run(t)
	started := make(chan struct{}, 1)
	startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) {
		_ = e.Register("quiet", func(ctx context.Context, l *Lease) error { started <- struct{}{}; <-ctx.Done(); return nil })
	})
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Now()
	_, err := Call(ctx, srv.Connect(), "t", "quiet", []byte("{}"))
	t.Logf("call to a worker without a handler answered in %v: %v", time.Since(t0), err)
	if !errors.Is(err, ErrNoHandler) || ctx.Err() != nil {
		t.Fatalf("Call = %v (ctx %v), want ErrNoHandler before the context ended", err, ctx.Err())
	}
	if !strings.Contains(err.Error(), "serves no calls") {
		t.Errorf("error %q does not say the worker serves no calls", err)
	}
}

// A name no node owns or registers fails at once with "no node owns".
func TestCallUnknownWorkerFailsAtOnce(t *testing.T) {
	srv := natstest.Run(t)
	n := startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register("known", holdUntilDone) })
	<-n.e.Synced()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Call(ctx, srv.Connect(), "t", "nosuch", []byte("{}"))
	if !errors.Is(err, ErrNoOwner) || ctx.Err() != nil || !strings.Contains(err.Error(), `no node owns "nosuch"`) {
		t.Fatalf("Call = %v (ctx %v), want ErrNoOwner naming the worker before the context ended", err, ctx.Err())
	}
}

// Calls to one worker run concurrently: four handlers wait for each other.
func TestCallsRunConcurrently(t *testing.T) {
	srv := natstest.Run(t)
	const n = 4
	var mu sync.Mutex
	inside := 0
	all := make(chan struct{})
	h := func(ctx context.Context, l *Lease, req []byte) ([]byte, error) {
		mu.Lock()
		if inside++; inside == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
			return []byte("ok"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register("par", holdUntilDone, WithHandler(h)) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make(chan error, n)
	for range n {
		go func() { _, err := Call(ctx, srv.Connect(), "t", "par", nil); errs <- err }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent call: %v", err)
		}
	}
}

// A request whose caller gave up while it waited for a free slot is never run.
func TestCallDroppedAfterCallerGaveUp(t *testing.T) {
	srv := natstest.Run(t)
	release := make(chan struct{})
	var mu sync.Mutex
	seen := map[string]int{}
	h := func(ctx context.Context, l *Lease, req []byte) ([]byte, error) {
		mu.Lock()
		seen[string(req)]++
		mu.Unlock()
		if string(req) == "block" {
			<-release
		}
		return req, nil
	}
	startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register("busy", holdUntilDone, WithHandler(h)) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Warm up: the worker is owned and answers.
	if _, err := Call(ctx, srv.Connect(), "t", "busy", []byte("warm")); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, MaxConcurrentCalls)
	for range MaxConcurrentCalls {
		go func() { _, err := Call(ctx, srv.Connect(), "t", "busy", []byte("block")); errs <- err }()
	}
	if err := waitCond(10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return seen["block"] == MaxConcurrentCalls }); err != nil {
		t.Fatal("the blocking calls did not all start")
	}
	short, scancel := context.WithTimeout(ctx, time.Second)
	_, err := Call(short, srv.Connect(), "t", "busy", []byte("late"))
	scancel()
	if !errors.Is(err, ErrNoOwner) {
		t.Fatalf("call that found every slot busy = %v, want a timeout (ErrNoOwner)", err)
	}
	close(release)
	for range MaxConcurrentCalls {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Call(ctx, srv.Connect(), "t", "busy", []byte("after")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["late"] != 0 {
		t.Fatalf("the request whose caller gave up ran %d times", seen["late"])
	}
}

// A reply larger than the server's max payload reaches the caller as a clear error.
func TestCallOversizedReply(t *testing.T) {
	srv := natstest.Run(t)
	h := func(ctx context.Context, l *Lease, req []byte) ([]byte, error) { return make([]byte, 2<<20), nil }
	startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register("big", holdUntilDone, WithHandler(h)) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Call(ctx, srv.Connect(), "t", "big", nil)
	var ce *CallError
	if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "exceeds the NATS max payload") {
		t.Fatalf("oversized reply: %v, want a CallError about the max payload", err)
	}
}

func waitCond(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
