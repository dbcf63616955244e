// Command hello is the demo worker of the container image (deploy/Dockerfile), which has no
// shell: it says where it runs and with which fencing token every 2 seconds, and stops on
// SIGTERM or SIGINT with a last line, so that logs show when each copy started and stopped.
//
//	CGO_ENABLED=0 go build -o deploy/hello/hello ./deploy/hello
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const interval = 2 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	node, token := os.Getenv("COORD_NODE"), os.Getenv("COORD_TOKEN")
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		// One write per line: the coordinator logs each line as one record.
		fmt.Printf("hello from %s token %s\n", node, token)
		select {
		case <-ctx.Done():
			fmt.Printf("hello stopping on %s token %s\n", node, token)
			return
		case <-t.C:
		}
	}
}
