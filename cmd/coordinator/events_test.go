package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetcoord/coordinator/internal/cluster"
	"github.com/jetcoord/coordinator/internal/natstest"
	"github.com/jetcoord/coordinator/kv"
	"github.com/jetcoord/coordinator/ownership"
)

// `events` without --follow prints every event the stream holds when it starts, then exits,
// however slowly they arrive: here the connection stalls for 0.8 s at a time.
func TestEventsPrintsWholeStream(t *testing.T) {
	srv := natstest.Run(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := kv.Open(ctx, nc, kv.Options{}); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	for i := range n {
		ev := ownership.Event{ID: fmt.Sprint(i), Type: "started", Kind: "worker", Time: time.Now(), Cluster: "coord", Node: "a", Name: fmt.Sprintf("w%d", i)}
		b, _ := json.Marshal(ev)
		if _, err := js.Publish(ctx, ev.Subject(), b); err != nil {
			t.Fatal(err)
		}
	}

	proxy, err := cluster.NewProxy(strings.TrimPrefix(srv.ClientURL(), "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a slow network: stalls of 0.8 s
		defer wg.Done()
		for {
			select {
			case <-stop:
				proxy.Unblock()
				return
			case <-time.After(200 * time.Millisecond):
			}
			proxy.Block()
			select {
			case <-stop:
				proxy.Unblock()
				return
			case <-time.After(800 * time.Millisecond):
			}
			proxy.Unblock()
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	for run := range 3 {
		var out, errb bytes.Buffer
		code := cli([]string{"events", "--nats", proxy.URL(), "--json"}, &out, &errb)
		lines := strings.Count(out.String(), "\n")
		if code != 0 || lines != n {
			t.Fatalf("run %d: exit %d, %d lines, want 0 and %d\nstderr: %s", run, code, lines, n, errb.String())
		}
	}
	// A filter that matches nothing: no lines, exit 0, no waiting for events to come.
	var out, errb bytes.Buffer
	if code := cli([]string{"events", "--nats", srv.ClientURL(), "--filter", "job.>"}, &out, &errb); code != 0 || out.Len() != 0 {
		t.Fatalf("filter matching nothing: exit %d, output %q, stderr %q", code, out.String(), errb.String())
	}
}
