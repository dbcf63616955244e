package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetcoord/coordinator/embedded"
	"github.com/jetcoord/coordinator/internal/cluster"
)

// TestMarkerLooksLikeTheServers: the expiry-marker fault writes what nats-server itself
// writes when a per-message TTL runs out, and a KV watcher takes both as a purge.
func TestMarkerLooksLikeTheServers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{Name: "marker", DataDir: t.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if err := srv.WaitJetStream(ctx); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "claims", LimitMarkerTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()

	// The server's marker: a key created with a TTL of 1s that nobody renews.
	if _, err := kv.Create(ctx, "expired", []byte("x"), jetstream.KeyTTL(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "forged", []byte("x")); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "KV_claims")
	if err != nil {
		t.Fatal(err)
	}
	if err := publishMarker(ctx, js, "claims", "forged", st.CachedInfo().Config.SubjectDeleteMarkerTTL); err != nil {
		t.Fatal(err)
	}
	var server *jetstream.RawStreamMsg
	err = cluster.WaitFor(10*time.Second, "the server's expiry marker", func() bool {
		m, err := st.GetLastMsgForSubject(ctx, "$KV.claims.expired")
		if err != nil || m.Header.Get(jetstream.MarkerReasonHeader) == "" {
			return false
		}
		server = m
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := st.GetLastMsgForSubject(ctx, "$KV.claims.forged")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{jetstream.MarkerReasonHeader, jetstream.MsgTTLHeader, jetstream.MsgRollup, "KV-Operation"} {
		if got, want := forged.Header.Get(h), server.Header.Get(h); got != want {
			t.Errorf("header %s: forged %q, the server's %q (server headers %v)", h, got, want, server.Header)
		}
	}
	t.Logf("the server's expiry marker: headers %v", server.Header)
	if len(forged.Data) != 0 || len(server.Data) != 0 {
		t.Errorf("markers carry data: forged %q, server %q", forged.Data, server.Data)
	}

	ops := map[string]jetstream.KeyValueOp{}
	err = cluster.WaitFor(10*time.Second, "both markers in the watch", func() bool {
		select {
		case e := <-w.Updates():
			if e != nil && e.Operation() != jetstream.KeyValuePut {
				ops[e.Key()] = e.Operation()
			}
		default:
		}
		return len(ops) == 2
	})
	if err != nil {
		t.Fatalf("%v: saw %v", err, ops)
	}
	for k, op := range ops {
		if op != jetstream.KeyValuePurge {
			t.Errorf("%s: the watcher saw %v, want a purge", k, op)
		}
	}
	if _, err := kv.Get(ctx, "forged"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("get after the forged marker: %v, want ErrKeyNotFound", err)
	}
}
