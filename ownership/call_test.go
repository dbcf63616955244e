package ownership

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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
	// Planned move: a releases, b starts with a's last checkpoint.
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
	leases := make(chan *Lease, 4)
	hold := func(ctx context.Context, l *Lease) error { leases <- l; <-ctx.Done(); return nil }
	startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) {
		e.testBeforeRenew = func(string) {
			stuck := false
			blocked.Do(func() { stuck = true })
			if stuck {
				<-block
			}
		}
		_ = e.Register(w, hold, WithHandler(x.handler("a")))
	})
	old := <-leases
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
