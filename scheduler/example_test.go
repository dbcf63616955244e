package scheduler_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetcoord/coordinator/embedded"
	"github.com/jetcoord/coordinator/kv"
	"github.com/jetcoord/coordinator/scheduler"
)

// A nightly job: every node adds it; each night it runs on one of them. Trigger runs it now,
// still once in the cluster.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir, _ := os.MkdirTemp("", "scheduler-example")
	defer os.RemoveAll(dir)
	srv, _ := embedded.Start(ctx, embedded.Config{Name: "node-a", DataDir: dir, Listen: "127.0.0.1:-1",
		Logger: slog.New(slog.DiscardHandler)})
	defer srv.Shutdown()
	_ = srv.WaitJetStream(ctx)
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()
	store, _ := kv.Open(ctx, nc, kv.Options{})

	s, _ := scheduler.New(store, "node-a", scheduler.WithLogger(slog.New(slog.DiscardHandler)))
	done := make(chan struct{})
	err := s.Add("report", "30 2 * * *", func(ctx context.Context, tick scheduler.Tick) error {
		fmt.Printf("report runs on %s, attempt %d, manual %v\n", tick.Node, tick.Attempt, tick.Manual)
		close(done)
		return nil
	}, scheduler.WithTimeZone("Europe/Berlin"), scheduler.WithCatchUp(scheduler.Last, 0))
	if err != nil {
		fmt.Println(err)
		return
	}
	noop := func(context.Context, scheduler.Tick) error { return nil }
	fmt.Println(s.Add("bad", "61 * * * *", noop)) // refused; "report" is not affected
	_ = s.Start(ctx)
	defer s.Close()

	_, _ = s.Trigger(ctx, "report")
	<-done
	for {
		jobs, _ := s.Jobs(ctx)
		if last := jobs[0].Last; last != nil && last.State == scheduler.StateSucceeded {
			fmt.Println("last run:", last.State, "on", last.Node)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Output:
	// scheduler: job "bad": invalid schedule "61 * * * *": minute field "61": end of range (61) above maximum (59)
	// report runs on node-a, attempt 1, manual true
	// last run: succeeded on node-a
}
