// Command holder is the benchmark's library process: it uses the ownership library with N
// no-op Go workers, the way an application embeds it, so that its CPU and memory can be read
// from /proc without the benchmark's own. It links only the library, its store (kv) and the
// NATS client, so that its RSS is not inflated by the benchmark's plotting and cluster code;
// the benchmark (package bench, holder.go) builds it at start and runs it as
// `holder -nats URL -namespace NS -node NAME -workers N -prefix P [-late] [-drained] [-info]`.
//
// It prints "ready" once the engine has read the claims, then "owned N renewals R errors E
// lost L claimed C" (C: the workers it began to own, ever) whenever the number of workers it
// holds changes, and every second, and once more after its engine closed. It stops
// (releasing its claims) on SIGTERM or when its stdin closes, so that it never outlives the
// benchmark; SIGUSR1 drains it and SIGUSR2 ends the drain. With -late it registers its
// workers after Start and prints "registered N SECONDS" (the time the Register calls took);
// with -drained it starts draining.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetcoord/coordinator/kv"
	"github.com/jetcoord/coordinator/ownership"
)

func main() {
	os.Exit(holderMain(os.Args[1:]))
}

// ownedCounter counts owned workers through the engine's metrics hook, so that watching
// the count costs the holder nothing.
type ownedCounter struct {
	ownership.NopMetrics
	n        atomic.Int64
	renewals atomic.Int64
	errors   atomic.Int64
	lost     atomic.Int64
	claimed  atomic.Int64 // ownership terms begun: workers this holder started owning
}

func (c *ownedCounter) Owned(delta int) {
	c.n.Add(int64(delta))
	if delta > 0 {
		c.claimed.Add(int64(delta))
	}
}

func (c *ownedCounter) LeaseLost(string, string) { c.lost.Add(1) }

func (c *ownedCounter) line() string {
	return fmt.Sprintf("owned %d renewals %d errors %d lost %d claimed %d", c.n.Load(), c.renewals.Load(), c.errors.Load(), c.lost.Load(), c.claimed.Load())
}

func (c *ownedCounter) Renewal(_ string, _ time.Duration, err error) {
	if err != nil {
		c.errors.Add(1)
		return
	}
	c.renewals.Add(1)
}

func holderMain(args []string) int {
	fs := flag.NewFlagSet("holder", flag.ContinueOnError)
	url := fs.String("nats", "", "NATS URL")
	ns := fs.String("namespace", "bench", "namespace")
	node := fs.String("node", "holder", "node name")
	n := fs.Int("workers", 0, "no-op workers to register")
	prefix := fs.String("prefix", "w", "worker name prefix")
	info := fs.Bool("info", false, "log at INFO (the progress of a stop or a drain), not only warnings")
	late := fs.Bool("late", false, "register the workers after Start, timed (prints \"registered N SECONDS\")")
	drained := fs.Bool("drained", false, "start draining (claim nothing) until SIGUSR2")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { // the parent holds our stdin; when it goes, so do we
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()

	drain := make(chan os.Signal, 1)
	signal.Notify(drain, syscall.SIGUSR1)
	defer signal.Stop(drain)
	undrain := make(chan os.Signal, 1)
	signal.Notify(undrain, syscall.SIGUSR2)
	defer signal.Stop(undrain)

	level := slog.LevelWarn
	if *info {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	nc, err := nats.Connect(*url, nats.Name("bench "+*node), nats.MaxReconnects(-1))
	if err != nil {
		log.Error("connect", "err", err)
		return 1
	}
	defer nc.Close()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	store, err := kv.Open(octx, nc, kv.Options{Namespace: *ns})
	cancel()
	if err != nil {
		log.Error("open store", "err", err)
		return 1
	}
	owned := &ownedCounter{}
	e, err := ownership.New(store, *node, ownership.DefaultConfig(), ownership.WithLogger(log), ownership.WithMetrics(owned))
	if err != nil {
		log.Error("engine", "err", err)
		return 1
	}
	noop := func(ctx context.Context, _ *ownership.Lease) error {
		<-ctx.Done()
		return nil
	}
	register := func() error {
		for i := range *n {
			if err := e.Register(fmt.Sprintf("%s%05d", *prefix, i), noop); err != nil {
				return err
			}
		}
		return nil
	}
	if !*late {
		if err := register(); err != nil {
			log.Error("register", "err", err)
			return 1
		}
	}
	if *drained {
		e.SetDraining(ctx, true) // before Start: the first membership record says so
	}
	if err := e.Start(ctx); err != nil {
		log.Error("start", "err", err)
		_ = e.Close()
		return 1
	}
	fmt.Println("ready")
	if *late {
		t0 := time.Now()
		if err := register(); err != nil {
			log.Error("register", "err", err)
			_ = e.Close()
			return 1
		}
		fmt.Printf("registered %d %.3f\n", *n, time.Since(t0).Seconds())
	}
	last, printed := int64(-1), time.Time{}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-drain:
			e.SetDraining(context.Background(), true)
		case <-undrain:
			e.SetDraining(context.Background(), false)
		case <-t.C:
			if v := owned.n.Load(); v != last || time.Since(printed) >= time.Second {
				last, printed = v, time.Now()
				fmt.Println(owned.line())
			}
		}
	}
	_ = e.Close()
	fmt.Println(owned.line())
	return 0
}
