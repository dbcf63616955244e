package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

func main() {
	if real := os.Getenv(envRealCoordinator); real != "" {
		os.Exit(wrapCoordinator(real, os.Args[1:]))
	}
	os.Exit(run(os.Args[1:], os.Stdout))
}

// options are the command line.
type options struct {
	bin      string
	duration time.Duration
	seed     int64
	workers  int
	jobs     int
	ttl      time.Duration
	logLevel string
	keep     bool
	verbose  bool
	ops      bool
	kinds    string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.bin, "bin", "", "coordinator binary to test (default: built from this tree)")
	fs.DurationVar(&o.duration, "duration", 3*time.Minute, "how long to inject faults")
	fs.Int64Var(&o.seed, "seed", 0, "seed of the fault schedule (default: from the clock; always printed)")
	fs.IntVar(&o.workers, "workers", 20, "supervised recorder workers")
	fs.IntVar(&o.jobs, "jobs", 3, "per-second cron jobs, if the coordinator supports jobs (0: none)")
	fs.DurationVar(&o.ttl, "ttl", 2*time.Second, "lease TTL of the nodes")
	fs.StringVar(&o.logLevel, "log-level", "debug", "log level of the nodes' JSON logs")
	fs.BoolVar(&o.keep, "keep", false, "keep the run's directory (logs, runs.log) even when it passes")
	fs.BoolVar(&o.verbose, "v", false, "print the harness's own log lines")
	fs.StringVar(&o.kinds, "kinds", "", "only these fault kinds, comma separated (default: all; see the summary's kinds)")
	fs.BoolVar(&o.ops, "ops", true, "add operator faults: reloads, slow stops, kv del/purge, expiry markers, bucket deletes, release and drain")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.workers < 1 || o.ttl <= 0 || o.duration <= 0 {
		return o, errors.New("-workers, -ttl and -duration must be positive")
	}
	for _, k := range splitKinds(o.kinds) {
		if !slices.Contains(faultKinds, k) && !slices.Contains(opKinds, k) {
			return o, fmt.Errorf("-kinds: unknown fault kind %q (kinds: %s, %s)", k, strings.Join(faultKinds, ", "), strings.Join(opKinds, ", "))
		}
		if !o.ops && isOp(k) {
			return o, fmt.Errorf("-kinds: %s is an operator fault, and -ops=false leaves those out", k)
		}
	}
	seedSet := false
	fs.Visit(func(f *flag.Flag) { seedSet = seedSet || f.Name == "seed" })
	if !seedSet {
		o.seed = time.Now().UnixNano() % 1_000_000_000
	}
	return o, nil
}

func run(args []string, stdout io.Writer) int {
	o, err := parseFlags(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	faults := "process and network faults only (-ops=false)"
	if o.ops {
		faults = "process, network and operator faults"
	}
	fmt.Fprintf(stdout, "chaos: seed %d, duration %v, 3 nodes, %d workers, TTL %v, %s\n", o.seed, o.duration, o.workers, o.ttl, faults)
	flags := fmt.Sprintf("-seed %d -duration %v", o.seed, o.duration)
	if o.workers != 20 || o.ttl != 2*time.Second || o.jobs != 3 {
		flags += fmt.Sprintf(" -workers %d -ttl %v -jobs %d", o.workers, o.ttl, o.jobs)
	}
	if !o.ops {
		flags += " -ops=false"
	}
	if o.kinds != "" {
		flags += " -kinds " + o.kinds
	}
	replay := fmt.Sprintf("make chaos CHAOS_FLAGS='%s'", flags)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	s := &suite{opts: o, out: stdout, t0: time.Now(), mono0: cluster.MonoNow()}
	res, err := s.run(ctx)
	code := 0
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(stdout, "chaos: interrupted; every process stopped")
		code = 130
	case err != nil:
		fmt.Fprintln(stdout, "chaos: FAILED to run:", err)
		code = 1
	case res.Failed():
		fmt.Fprintln(stdout, "\nchaos: FAIL")
		code = 1
	default:
		fmt.Fprintln(stdout, "\nchaos: PASS")
	}
	if s.dir != "" {
		if code != 0 || o.keep {
			fmt.Fprintf(stdout, "chaos: logs, runs.log and ticks.log kept in %s\n", s.dir)
		} else {
			os.RemoveAll(s.dir)
		}
	}
	fmt.Fprintf(stdout, "chaos: seed %d — replay with: %s\n", o.seed, replay)
	return code
}

// suite is one chaos run.
type suite struct {
	opts    options
	out     io.Writer
	t0      time.Time
	mono0   cluster.Mono // read together with t0
	dir     string
	binDir  string
	harness *os.File // the harness's log lines

	c        *cluster.Cluster
	net      *routeNet
	workers  []string
	jobs     []string
	jobsNote string

	cfgMu sync.Mutex
	cfg   chaosConfig // the config file the nodes run with now

	mu       sync.Mutex
	faults   []*Fault
	problems []string
}

func (s *suite) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, "[%6.1fs] %s\n", time.Since(s.t0).Seconds(), fmt.Sprintf(format, args...))
}

// dumpUnready has every running node that is not ready write its goroutines to its log
// (SIGQUIT: the Go runtime prints them and exits), so that a node that hung can be read
// after the run.
func (s *suite) dumpUnready() {
	for _, n := range s.c.Nodes() {
		if !n.Running() || n.Ready() {
			continue
		}
		if n.Paused() {
			_ = n.Cont()
		}
		if err := n.Signal(syscall.SIGQUIT); err == nil {
			s.printf("  %s is not ready: its goroutines are in %s (SIGQUIT)", n.Name(), n.LogPath())
		}
	}
}

func (s *suite) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.printf("PROBLEM: %s", msg)
	s.mu.Lock()
	s.problems = append(s.problems, msg)
	s.mu.Unlock()
}

func (s *suite) harnessLog(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if s.harness != nil {
		fmt.Fprintf(s.harness, "%s %s\n", time.Now().Format(time.RFC3339Nano), line)
	}
	if s.opts.verbose {
		s.printf("  %s", line)
	}
}

// run sets the cluster up, injects the faults, checks and tears everything down.
func (s *suite) run(ctx context.Context) (*Result, error) {
	if err := s.setup(ctx); err != nil {
		s.teardown()
		return nil, err
	}
	res := &Result{}
	var leftover []int
	func() {
		defer func() {
			res.Runs, _ = s.c.Runs()
			leftover = s.teardown()
		}()
		if err := s.start(ctx); err != nil {
			s.problem("%v", err)
			return
		}
		stopMonitor := s.monitor()
		defer stopMonitor()
		s.faultPhase(ctx)
		if ctx.Err() != nil {
			return
		}
		s.printf("faults over; checking that every worker runs")
		res.End = s.finalState(ctx)
	}()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return s.check(res, leftover)
}

func (s *suite) setup(ctx context.Context) error {
	var err error
	if s.dir, err = os.MkdirTemp("", "chaos-"); err != nil {
		return err
	}
	if s.harness, err = os.Create(filepath.Join(s.dir, "harness.log")); err != nil {
		return err
	}
	if s.binDir, err = os.MkdirTemp("", "chaos-bin-"); err != nil {
		return err
	}
	s.printf("building the recorder and the reaper")
	bins, err := cluster.Build(s.binDir)
	if err != nil {
		return err
	}
	if s.opts.bin != "" {
		if bins.Coordinator, err = filepath.Abs(s.opts.bin); err != nil {
			return err
		}
		if _, err := os.Stat(bins.Coordinator); err != nil {
			return fmt.Errorf("-bin: %w", err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	for i := range s.opts.workers {
		s.workers = append(s.workers, fmt.Sprintf("w%02d", i))
	}
	for i := range s.opts.jobs {
		s.jobs = append(s.jobs, fmt.Sprintf("cron%d", i))
	}
	if len(s.jobs) > 0 {
		s.jobsNote = fmt.Sprintf("%d jobs @every 1s", len(s.jobs))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	cdir := filepath.Join(s.dir, "cluster")
	mapPath := filepath.Join(s.dir, "routes.map")
	s.cfg = chaosConfig{Workers: s.workers, Recorder: bins.Recorder, Dir: cdir, Jobs: s.jobs, Gen: map[string]int{}}
	if s.opts.ops {
		s.cfg.Slow = slowWorkers(s.workers)
		s.cfg.ShutdownGrace = shutdownGraceFor(s.opts.ttl)
		s.cfg.StopDelay = slowStopDelay(s.opts.ttl)
		s.cfg.StopGrace = slowStopGrace(s.opts.ttl)
	}
	wrapped := bins
	wrapped.Coordinator = self
	opts := cluster.Options{
		Nodes:    3,
		TTL:      s.opts.ttl,
		Config:   s.cfg.YAML(),
		Dir:      cdir,
		Binaries: wrapped,
		LogLevel: s.opts.logLevel,
		Env:      []string{envRealCoordinator + "=" + bins.Coordinator, envRouteMap + "=" + mapPath},
		Logf:     s.harnessLog,
	}
	if s.c, err = cluster.New(opts); err != nil {
		return err
	}
	if s.net, err = newRouteNet(s.c.Nodes(), s.harnessLog); err != nil {
		// Without the proxies there are no partitions; the other faults still run.
		s.printf("NOTICE: partitions skipped — %v", err)
		s.c.Close()
		opts.Binaries, opts.Env = bins, nil
		s.c, err = cluster.New(opts)
		return err
	}
	return s.net.WriteMap(mapPath)
}

// start starts the nodes and waits until they are ready and every worker runs.
func (s *suite) start(ctx context.Context) error {
	how := "routes through the partition proxies"
	if s.net == nil {
		how = "direct routes"
	}
	s.printf("starting 3 nodes (%s) in %s", how, s.dir)
	if err := s.c.StartAll(); err != nil {
		return err
	}
	if err := s.waitRecovered(ctx, 2*time.Minute); err != nil {
		return fmt.Errorf("the cluster did not come up: %w", err)
	}
	s.printf("cluster ready")
	s.checkRoutes(ctx)
	if notRunning := s.waitRunning(ctx, time.Minute); len(notRunning) > 0 {
		return fmt.Errorf("after start, workers not running within a minute: %v", notRunning)
	}
	s.printf("all %d workers running", len(s.workers))
	return nil
}

// faultPhase injects the seed's faults until the duration is spent.
func (s *suite) faultPhase(ctx context.Context) {
	start := time.Now()
	end := start.Add(s.opts.duration)
	kinds := faultKinds
	if s.net == nil {
		kinds = kinds[:len(kinds)-1] // FaultPartition is last
	}
	if s.opts.ops {
		kinds = append(append([]string(nil), kinds...), opKinds...)
	}
	if only := splitKinds(s.opts.kinds); len(only) > 0 {
		kinds = slices.DeleteFunc(kinds, func(k string) bool { return !slices.Contains(only, k) })
		if len(kinds) == 0 {
			s.problem("-kinds %s: none of them can run here (partitions need the route proxies)", s.opts.kinds)
			return
		}
	}
	p := newPlanner(s.opts.seed, s.opts.ttl, s.c.Len(), kinds)
	// The shortest budget any fault can have: below it, nothing fits any more.
	least := Fault{}.Budget(s.opts.ttl)
	skipped := 0
	for ctx.Err() == nil && time.Until(end) >= least && skipped < 2*len(kinds) {
		f := p.next()
		if time.Until(end) < f.Budget(s.opts.ttl) {
			// Skipped, not stopped at: a short run still gets the faults that fit, in the
			// seed's order.
			s.harnessLog("fault #%d %s skipped: it may take %v, %v left", f.N, f.Kind, f.Budget(s.opts.ttl), time.Until(end).Round(time.Second))
			skipped++
			continue
		}
		skipped = 0
		sleep(ctx, f.Quiet)
		err := s.inject(ctx, &f)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.faults = append(s.faults, &f)
		s.mu.Unlock()
		if err != nil {
			f.Err = err
			if errors.Is(err, errNoEffect) {
				// The operator's command was refused, e.g. a release racing a move: it
				// did nothing, so nothing is at stake, but the table shows it failed.
				s.printf("  NOTE: fault %s did nothing: %v", &f, err)
			} else {
				s.problem("fault %s: %v", &f, err)
			}
		}
		if f.Healed == 0 {
			f.Healed = cluster.MonoNow()
		}
		if err := s.waitRecovered(ctx, 90*time.Second); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.problem("after fault %s the cluster did not recover: %v", &f, err)
			s.dumpUnready()
			return
		}
		f.Recovered = cluster.MonoNow()
		s.printf("  recovered %v after the end of the fault", fmtDur(f.Recovered.Sub(f.Healed)))
		s.checkRoutes(ctx)
	}
	if rest := time.Until(end); rest > 0 {
		s.printf("no time for another fault; observing for %v", rest.Round(time.Second))
		sleep(ctx, rest)
	}
}

// runningOn returns, for each worker that runs now as its claim says, the run.
func (s *suite) runningNow() (map[string]cluster.Run, map[string]string) {
	live := map[string]cluster.Run{}
	why := map[string]string{}
	runs, err := s.c.Runs()
	if err != nil {
		for _, w := range s.workers {
			why[w] = err.Error()
		}
		return live, why
	}
	var st cluster.Status
	var stErr error = cluster.ErrNotRunning
	for _, n := range s.c.Nodes() {
		if n.Running() && !n.Paused() {
			if st, stErr = n.Status(); stErr == nil {
				break
			}
		}
	}
	now := cluster.MonoNow()
	for _, w := range s.workers {
		rs := cluster.RunsOf(runs, w)
		if len(rs) == 0 {
			why[w] = "never ran"
			continue
		}
		r := rs[len(rs)-1]
		if r.Stopped || now.Sub(r.End) > time.Second {
			why[w] = fmt.Sprintf("last run on %s ended %v ago", r.Node, now.Sub(r.End).Round(time.Millisecond))
			continue
		}
		if stErr != nil {
			why[w] = "no node answers /status: " + stErr.Error()
			continue
		}
		claim, ok := st.Worker(w)
		if !ok {
			why[w] = fmt.Sprintf("runs on %s but has no claim", r.Node)
			continue
		}
		if claim.Node != r.Node || claim.Token != r.Token {
			why[w] = fmt.Sprintf("runs on %s token %d but the claim is %s token %d", r.Node, r.Token, claim.Node, claim.Token)
			continue
		}
		live[w] = r
	}
	return live, why
}

// waitRunning waits until every worker runs where its claim says and returns those that
// do not when timeout passes.
func (s *suite) waitRunning(ctx context.Context, timeout time.Duration) []string {
	var why map[string]string
	_ = poll(ctx, timeout, func() bool {
		_, why = s.runningNow()
		return len(why) == 0
	})
	out := make([]string, 0, len(why))
	for w, y := range why {
		out = append(out, w+": "+y)
	}
	sort.Strings(out)
	return out
}

// finalState waits (bounded) until every worker runs and returns each one's state.
func (s *suite) finalState(ctx context.Context) map[string]WorkerEnd {
	t0 := time.Now()
	timeout := 30*s.opts.ttl + 30*time.Second
	_ = poll(ctx, timeout, func() bool {
		_, why := s.runningNow()
		return len(why) == 0
	})
	live, why := s.runningNow()
	out := map[string]WorkerEnd{}
	for _, w := range s.workers {
		if r, ok := live[w]; ok {
			out[w] = WorkerEnd{Running: true, Node: r.Node, Token: r.Token}
		} else {
			out[w] = WorkerEnd{Why: why[w]}
		}
	}
	if len(live) == len(s.workers) {
		s.printf("all %d workers run where their claims say (after %v)", len(s.workers), time.Since(t0).Round(100*time.Millisecond))
	} else {
		s.printf("%d of %d workers do not run %v after the last fault", len(s.workers)-len(live), len(s.workers), timeout)
	}
	return out
}

// monitor prints violations as they appear, so that a long run shows them at once. The
// returned function stops it and waits for it.
func (s *suite) monitor() func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		seen := map[string]bool{}
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			runs, err := s.c.Runs()
			if err != nil {
				continue
			}
			for _, v := range cluster.CheckRuns(runs) {
				// Keyed by the runs, not the text: an overlap still going on grows.
				if k := fmt.Sprintf("%s %s %d/%d %d/%d", v.Kind, v.Worker, v.A.PID, v.A.Start, v.B.PID, v.B.Start); !seen[k] {
					seen[k] = true
					s.printf("VIOLATION: %v", v)
				}
			}
			if len(s.jobs) > 0 {
				ticks, _ := readTicks(filepath.Join(s.c.Dir(), TicksFile))
				for _, d := range checkTicks(ticks).Duplicates {
					if k := d.Job + " " + d.Tick; !seen[k] {
						seen[k] = true
						s.printf("VIOLATION: %s tick %s ran %d times (%v)", d.Job, d.Tick, len(d.Nodes), d.Nodes)
					}
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// teardown stops every process and proxy and returns the processes still alive after.
func (s *suite) teardown() []int {
	var procs []int
	if s.c != nil {
		for _, n := range s.c.Nodes() {
			procs = append(procs, n.Processes()...)
		}
		s.c.Close()
	}
	if s.net != nil {
		s.net.Close()
	}
	if s.binDir != "" {
		os.RemoveAll(s.binDir)
	}
	var left []int
	for _, p := range procs {
		if cluster.Alive(p) {
			left = append(left, p)
		}
	}
	if s.harness != nil {
		s.harness.Close()
	}
	return left
}

// check runs the checker over the records and prints the summary.
func (s *suite) check(res *Result, leftover []int) (*Result, error) {
	res.Leftover = leftover
	res.Problems = s.problems
	res.ShutdownGrace = s.cfg.ShutdownGrace
	res.Violations = cluster.CheckRuns(res.Runs)
	res.Gaps = gapsOf(res.Runs)
	if res.End == nil {
		res.End = map[string]WorkerEnd{}
		for _, w := range s.workers {
			res.End[w] = WorkerEnd{Why: "the run ended early"}
		}
	}
	if len(s.jobs) > 0 {
		ticks, err := readTicks(filepath.Join(s.c.Dir(), TicksFile))
		if err != nil {
			return nil, err
		}
		tr := checkTicks(ticks)
		res.Ticks = &tr
	}
	if s.net != nil {
		_, res.Unknown = s.net.Stats()
	}
	toMono := func(t time.Time) cluster.Mono { return s.mono0.Add(t.Sub(s.t0)) }
	res.print(s.out, s.workers, s.faults, s.jobs, s.jobsNote, toMono)
	return res, nil
}

// checkRoutes makes sure that every route between the nodes goes through the partition
// proxies: a direct one would survive a partition and make it a different fault.
func (s *suite) checkRoutes(ctx context.Context) {
	if s.net == nil {
		return
	}
	first := s.net.Bypasses()
	if len(first) == 0 {
		return
	}
	sleep(ctx, time.Second)
	again := map[string]bool{}
	for _, b := range s.net.Bypasses() {
		again[b] = true
	}
	for _, b := range first {
		if again[b] {
			s.problem("a route connection bypasses the partition proxies (/proc/net/tcp %s)", b)
		}
	}
}

func splitKinds(list string) []string {
	var out []string
	for _, k := range strings.Split(list, ",") {
		if k = strings.TrimSpace(k); k != "" {
			out = append(out, k)
		}
	}
	return out
}
