package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetcoord/coordinator/internal/cluster"
	"github.com/jetcoord/coordinator/kv"
)

// The README's 5-minute tour, replayed on the demo config: status prints the tour's table
// headers with hello running, the claim is readable JSON with its token, events show the
// claim, logs show the demo's output, and a graceful stop releases the claim.
func TestTour(t *testing.T) {
	b := bins(t)
	demo, err := os.ReadFile("../../deploy/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, tour, _ := strings.Cut(string(readme), "## A 5-minute tour")
	tour, _, _ = strings.Cut(tour, "\n## ")
	var headers []string
	for _, l := range strings.Split(tour, "\n") {
		if strings.HasPrefix(l, "WORKER ") || strings.HasPrefix(l, "NODE ") {
			headers = append(headers, strings.Join(strings.Fields(l), " "))
		}
	}
	if len(headers) < 2 {
		t.Fatalf("the tour shows no status table headers")
	}

	c, err := cluster.Start(t, cluster.Options{Nodes: 1, TTL: 2 * time.Second, Binaries: b, Config: string(demo)})
	if err != nil {
		t.Fatal(err)
	}
	n := c.Node(0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out string
	waitUntil(t, "hello running in `status`", func() bool {
		o, err := n.CLI(ctx, "status")
		out = string(o)
		return err == nil && strings.Contains(out, "hello") && hasRow(out, "hello", "running")
	})
	for _, h := range headers {
		if !hasLine(out, h) {
			t.Errorf("status lacks the tour's header %q:\n%s", h, out)
		}
	}

	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	st, err := kv.Open(ctx, nc, kv.Options{BindOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	e, err := st.Workers.Get(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"worker":"hello"`, `"node":"` + n.Name() + `"`, `"token":`, `"state":"running"`} {
		if !strings.Contains(string(e.Value), k) {
			t.Errorf("claim %s lacks %s", e.Value, k)
		}
	}
	if ev, err := n.CLI(ctx, "events"); err != nil || !strings.Contains(string(ev), "claimed") {
		t.Errorf("events: %v\n%s", err, ev)
	}
	waitUntil(t, "the demo's output in `logs hello`", func() bool {
		o, err := n.CLI(ctx, "logs", "hello")
		return err == nil && strings.Contains(string(o), "hello from "+n.Name())
	})
}

// hasRow reports whether a table line starts with first and has want among its fields.
func hasRow(out, first, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == first {
			for _, x := range f {
				if x == want {
					return true
				}
			}
		}
	}
	return false
}

func hasLine(out, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.Join(strings.Fields(l), " ") == want {
			return true
		}
	}
	return false
}
