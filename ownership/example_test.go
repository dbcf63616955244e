package ownership_test

import (
	"context"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/jetcoord/coordinator/embedded"
	"github.com/jetcoord/coordinator/kv"
	"github.com/jetcoord/coordinator/ownership"
)

// Register a singleton: every replica registers "billing"; exactly one runs it.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	srv, _ := embedded.Start(ctx, embedded.Config{Name: "node-a", DataDir: dir, Listen: "127.0.0.1:-1"})
	defer srv.Shutdown()
	_ = srv.WaitJetStream(ctx)
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()

	store, _ := kv.Open(ctx, nc, kv.Options{})
	engine, _ := ownership.New(store, "node-a", ownership.DefaultConfig(), ownership.WithoutEvents())
	running := make(chan struct{})
	_ = engine.Register("billing", func(ctx context.Context, lease *ownership.Lease) error {
		fmt.Println("billing runs on", lease.Node())
		close(running)
		<-ctx.Done() // the lease ended or the node stops: return promptly
		return nil
	})
	_ = engine.Start(ctx)
	<-running

	owner, _ := engine.Lookup(ctx, "billing")
	fmt.Println("owner:", owner.Node)
	_ = engine.Close() // stops the worker and releases the claim: another node starts it at once
	_, err := engine.Lookup(ctx, "billing")
	fmt.Println(err)
	// Output:
	// billing runs on node-a
	// owner: node-a
	// ownership: worker not owned: "billing"
}
