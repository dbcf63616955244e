package embedded_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jetcoord/coordinator/embedded"
	"github.com/nats-io/nats.go"
)

func Example() {
	dir, _ := os.MkdirTemp("", "embedded-example")
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	srv, err := embedded.Start(ctx, embedded.Config{
		Name: "node-a", DataDir: dir, Listen: "127.0.0.1:-1", Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	if err := srv.WaitJetStream(ctx); err != nil {
		fmt.Println(err)
		return
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	fmt.Println("connected:", nc.IsConnected(), "JetStream ready:", srv.Ready())
	// Output: connected: true JetStream ready: true
}
