package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetcoord/coordinator/kv"
	"github.com/jetcoord/coordinator/ownership"
)

// The holder is this binary re-executed as `bench holder …`: one process that uses the
// ownership library with N no-op Go workers, the way an application embeds it, so that
// its CPU and memory can be read from /proc without the benchmark's own.
//
// It prints "ready" once the engine has read the claims, then "owned N renewals R errors E
// lost L claimed C" (C: the workers it began to own, ever) whenever the number of workers it holds changes, and every second, and once more
// after its engine closed. It stops (releasing its claims) on SIGTERM or when its stdin
// closes, so that it never outlives the benchmark; SIGUSR1 drains it and SIGUSR2 ends the
// drain. With -late it registers its workers after Start and prints "registered N SECONDS"
// (the time the Register calls took); with -drained it starts draining.

const holderArg = "holder"

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

// holder is a running holder process, seen from the benchmark.
type holder struct {
	node     string
	logPath  string // its stderr: the ownership library's warnings
	logFile  *os.File
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	ready    chan struct{}
	owned    atomic.Int64
	renewals atomic.Int64
	errors   atomic.Int64
	lost     atomic.Int64 // leases the holder's engine lost (Metrics.LeaseLost)
	claimed  atomic.Int64 // ownership terms the holder began (Metrics.Owned(+1))
	// registered is closed once a -late holder printed how long its Register calls took
	// (registerS, seconds).
	registered chan struct{}
	registerS  float64
	done       chan struct{}
	wg         sync.WaitGroup
}

// startHolder runs this binary as a holder against url; its stderr goes to a file in dir.
func startHolder(dir, url, ns, node, prefix string, workers int, extra ...string) (*holder, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, fmt.Sprintf("holder-%s-%s.log", ns, node))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := append([]string{holderArg, "-nats", url, "-namespace", ns, "-node", node,
		"-workers", strconv.Itoa(workers), "-prefix", prefix}, extra...)
	cmd := exec.Command(self, args...)
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	h := &holder{node: node, logPath: logPath, logFile: logFile, cmd: cmd, stdin: stdin, ready: make(chan struct{}), registered: make(chan struct{}), done: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(h.done)
		sc := bufio.NewScanner(stdout)
		readyOnce := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "ready":
				readyOnce.Do(func() { close(h.ready) })
			case strings.HasPrefix(line, "registered "):
				var n int
				if _, err := fmt.Sscanf(line, "registered %d %g", &n, &h.registerS); err == nil {
					close(h.registered)
				}
			case strings.HasPrefix(line, "owned "):
				var o, r, e, l, c int64
				if _, err := fmt.Sscanf(line, "owned %d renewals %d errors %d lost %d claimed %d", &o, &r, &e, &l, &c); err == nil {
					h.owned.Store(o)
					h.renewals.Store(r)
					h.errors.Store(e)
					h.lost.Store(l)
					h.claimed.Store(c)
				}
			}
		}
		_ = cmd.Wait()
	}()
	return h, nil
}

func (h *holder) PID() int { return h.cmd.Process.Pid }

// WaitReady waits until the holder's engine has started.
func (h *holder) WaitReady(timeout time.Duration) error {
	select {
	case <-h.ready:
		return nil
	case <-h.done:
		return fmt.Errorf("holder %s exited before it was ready", h.node)
	case <-time.After(timeout):
		return fmt.Errorf("holder %s not ready after %v", h.node, timeout)
	}
}

// Stop asks the holder to release its workers and exit, and kills it after a grace.
func (h *holder) Stop() {
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(45 * time.Second):
		_ = h.cmd.Process.Kill()
	}
	h.stdin.Close()
	h.wg.Wait()
	h.logFile.Close()
}

// Complaints counts the holder's log records at WARN and above by message, e.g.
// {"could not release claim; it will expire": 12}.
func (h *holder) Complaints() map[string]int {
	data, err := os.ReadFile(h.logPath)
	if err != nil {
		return nil
	}
	out := map[string]int{}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, "level=WARN") && !strings.Contains(line, "level=ERROR") {
			continue
		}
		msg := "?"
		if i := strings.Index(line, `msg="`); i >= 0 {
			rest := line[i+5:]
			if j := strings.IndexByte(rest, '"'); j >= 0 {
				msg = rest[:j]
			}
		} else if i := strings.Index(line, "msg="); i >= 0 {
			msg = strings.Fields(line[i+4:])[0]
		}
		out[msg]++
	}
	return out
}

// waitOwned waits until the holders own total workers between them, and the counts have
// not changed for stable.
func waitOwned(hs []*holder, total int, stable, timeout time.Duration) ([]int, error) {
	deadline := time.Now().Add(timeout)
	var last []int
	var since time.Time
	for {
		counts := make([]int, len(hs))
		sum := 0
		for i, h := range hs {
			counts[i] = int(h.owned.Load())
			sum += counts[i]
			select {
			case <-h.done:
				return counts, fmt.Errorf("holder %s exited", h.node)
			default:
			}
		}
		same := len(last) == len(counts)
		for i := range counts {
			same = same && last[i] == counts[i]
		}
		if !same {
			last, since = counts, time.Now()
		}
		if sum == total && time.Since(since) >= stable {
			return counts, nil
		}
		if time.Now().After(deadline) {
			return counts, errors.New("timed out waiting for the holders to own " + strconv.Itoa(total) + " workers")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
