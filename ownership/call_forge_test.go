package ownership

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetcoord/coordinator/internal/natstest"
)

// A stranger that subscribes to a worker's call subject and answers first, with the
// owner's node and token copied from the (readable) claim, does not get its reply
// accepted: every call returns the owner's answer. With only the forger answering, the
// call fails with ErrUnverifiedReply instead of returning the forged data.
func TestCallRejectsForgedReply(t *testing.T) {
	srv := natstest.Run(t)
	w := nameFor("svc", "a", "a")
	x := &echo{answered: map[string][]string{}}
	startNode(t, srv, "a", ConfigForTTL(testTTL), func(e *Engine) { _ = e.Register(w, holdUntilDone, WithHandler(x.handler("a"))) })
	caller := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	genuine, err := Call(ctx, caller, "t", w, []byte(`{"n":0}`))
	if err != nil {
		t.Fatal(err)
	}

	forger := srv.Connect()
	forge := func(m *nats.Msg) {
		r := nats.NewMsg(m.Reply)
		r.Header.Set(HeaderNode, genuine.Node)
		r.Header.Set(HeaderToken, strconv.FormatUint(genuine.Token, 10))
		r.Header.Set(HeaderSignature, "AAAA")
		r.Data = []byte(`{"node":"forged"}`)
		_ = m.RespondMsg(r)
	}
	sub, err := forger.Subscribe(CallSubject("t", w), forge)
	if err != nil {
		t.Fatal(err)
	}
	if err := forger.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 6; i++ {
		r, err := Call(ctx, caller, "t", w, []byte(`{"n":`+strconv.Itoa(i)+`}`))
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Data) != `{"node":"a"}` {
			t.Fatalf("call %d accepted %s from %q", i, r.Data, r.Node)
		}
	}

	// Only the forger answers, for a worker nobody owns.
	other := "unowned"
	fsub, err := forger.Subscribe(CallSubject("t", other), forge)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = fsub.Unsubscribe() }()
	_ = sub.Unsubscribe()
	if err := forger.Flush(); err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	if r, err := Call(short, caller, "t", other, []byte(`{}`)); !errors.Is(err, ErrUnverifiedReply) {
		t.Fatalf("forger alone: reply %+v, err %v; want ErrUnverifiedReply", r, err)
	}
}
