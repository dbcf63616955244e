package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetcoord/coordinator/internal/cluster"
	"github.com/jetcoord/coordinator/kv"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

type options struct {
	bin        string
	out        string
	kills2     int
	kills5     int
	handoffs   int
	releases   int
	releaseTTL time.Duration
	cpuWindow  time.Duration
	claimsTime time.Duration
	only       map[string]bool
	keep       bool
	drain      bool
	verbose    bool
}

// Phases of the benchmark, for -only.
const (
	phaseSingle  = "single"  // one daemon: idle RSS, claims on 1 node, holders (CPU, RSS, balance)
	phaseTTL2    = "ttl2"    // three nodes at TTL 2s: cron delay, claims on 3 nodes, handoffs, kills
	phaseTTL5    = "ttl5"    // three nodes at TTL 5s: kills
	phaseStop    = "stop"    // planned stop of 10,000 workers and drain of 3,333 (stop.go)
	phaseScale   = "scale"   // 10,000 and 100,000 workers: Register, CPU, RSS, failover (scale.go)
	phaseRelease = "release" // three nodes at TTL 2s: `coordinator release W` (release.go)
	phaseRolling = "rolling" // three holders of 1,000 workers restarted in turn: moves (rolling.go)
)

var phases = []string{phaseSingle, phaseTTL2, phaseTTL5, phaseRelease, phaseRolling, phaseStop, phaseScale}

func parseFlags(args []string) (options, error) {
	var o options
	var only string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&o.bin, "bin", "", "coordinator binary (default: built from this tree)")
	fs.StringVar(&o.out, "out", "bench", "directory for results.json and the plots")
	fs.IntVar(&o.kills2, "kills2", 10, "SIGKILL failovers to measure at TTL 2s")
	fs.IntVar(&o.kills5, "kills5", 6, "SIGKILL failovers to measure at TTL 5s")
	fs.IntVar(&o.handoffs, "handoffs", 10, "SIGTERM handoffs to measure")
	fs.IntVar(&o.releases, "releases", 10, "releases (coordinator release W) to measure")
	fs.DurationVar(&o.releaseTTL, "release-ttl", 2*time.Second, "TTL of the release phase's cluster")
	fs.DurationVar(&o.cpuWindow, "cpu-window", 30*time.Second, "how long to measure a holder's CPU once all its workers are claimed")
	fs.DurationVar(&o.claimsTime, "claims-time", 3*time.Second, "how long each claims/s measurement runs")
	fs.StringVar(&only, "only", "", "comma separated phases to run: "+strings.Join(phases, ", ")+" (default all)")
	fs.BoolVar(&o.drain, "drain", true, "stop phase: also measure the drain of one of three holders (about 5 minutes)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (node logs, runs.log) and print where")
	fs.BoolVar(&o.verbose, "v", false, "print the harness's log lines")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.only = map[string]bool{}
	for _, p := range strings.Split(only, ",") {
		if p = strings.TrimSpace(p); p != "" {
			if !slices.Contains(phases, p) {
				return o, fmt.Errorf("-only: unknown phase %q (use %s)", p, strings.Join(phases, ", "))
			}
			o.only[p] = true
		}
	}
	return o, nil
}

func (o options) runs(phase string) bool { return len(o.only) == 0 || o.only[phase] }

// bench is one benchmark run.
type bench struct {
	opts      options
	res       *Results
	bins      cluster.Binaries
	holderBin string // the holder program (bench/holder), built by setup
	work      string
	t0        time.Time
	failed    []string

	balanceCounts map[string]int // workers owned per holder, for the plot
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(b.t0).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) harnessLog(format string, args ...any) {
	if b.opts.verbose {
		b.logf("  "+format, args...)
	}
}

func (b *bench) fail(phase string, err error) {
	b.logf("%s: FAILED: %v", phase, err)
	b.failed = append(b.failed, phase+": "+err.Error())
	b.res.Note("%s failed: %v", phase, err)
}

func run(args []string) int {
	o, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{opts: o, res: newResults(os.Stdout), t0: time.Now()}
	if err := b.setup(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if b.work != "" {
			os.RemoveAll(b.work)
		}
		return 1
	}
	defer func() {
		if o.keep {
			b.logf("work directory kept: %s", b.work)
			return
		}
		os.RemoveAll(b.work)
	}()

	if o.runs(phaseSingle) && ctx.Err() == nil {
		if err := b.single(ctx); err != nil {
			b.fail(phaseSingle, err)
		}
	}
	if o.runs(phaseTTL2) && ctx.Err() == nil {
		if err := b.ttl2(ctx); err != nil {
			b.fail(phaseTTL2, err)
		}
		b.failoverFigures("failover_kill_ms_ttl2s", o.kills2)
		b.handoffFigures()
	}
	if o.runs(phaseTTL5) && ctx.Err() == nil {
		if err := b.ttl5(ctx); err != nil {
			b.fail(phaseTTL5, err)
		}
		b.failoverFigures("failover_kill_ms_ttl5s", o.kills5)
	}
	if o.runs(phaseRelease) && ctx.Err() == nil {
		if err := b.release(ctx); err != nil {
			b.fail(phaseRelease, err)
		}
	}
	if o.runs(phaseRolling) && ctx.Err() == nil {
		if err := b.rolling(ctx); err != nil {
			b.fail(phaseRolling, err)
		}
	}
	if o.runs(phaseStop) && ctx.Err() == nil {
		if err := b.stops(ctx); err != nil {
			b.fail(phaseStop, err)
		}
	}
	if o.runs(phaseScale) && ctx.Err() == nil {
		if err := b.scale(ctx); err != nil {
			b.fail(phaseScale, err)
		}
	}
	if ctx.Err() != nil {
		b.logf("interrupted; every process stopped")
		return 130
	}

	b.plots()
	if err := b.res.Write(o.out); err != nil {
		b.fail("results", err)
	}
	b.res.Compare()
	b.logf("done in %v; results.json and plots in %s", time.Since(b.t0).Round(time.Second), o.out)
	if len(b.failed) > 0 {
		for _, f := range b.failed {
			fmt.Fprintln(os.Stderr, "bench: FAILED:", f)
		}
		return 1
	}
	return 0
}

func (b *bench) setup(ctx context.Context) error {
	if err := os.MkdirAll(b.opts.out, 0o755); err != nil {
		return err
	}
	var err error
	if b.work, err = os.MkdirTemp("", "bench-"); err != nil {
		return err
	}
	b.logf("building the recorder, the reaper and the holder")
	binDir := filepath.Join(b.work, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	if b.bins, err = cluster.Build(binDir); err != nil {
		return err
	}
	if b.holderBin, err = buildHolder(binDir); err != nil {
		return err
	}
	if b.opts.bin != "" {
		if b.bins.Coordinator, err = filepath.Abs(b.opts.bin); err != nil {
			return err
		}
		if _, err := os.Stat(b.bins.Coordinator); err != nil {
			return fmt.Errorf("-bin: %w", err)
		}
	}
	return nil
}

// startSingle starts one coordinator daemon (TTL 15s, no workers) in the work directory dir
// and waits until it is ready. The caller closes the cluster.
func (b *bench) startSingle(dir string) (*cluster.Cluster, error) {
	c, err := cluster.New(cluster.Options{Nodes: 1, TTL: 15 * time.Second, Binaries: b.bins,
		Dir: filepath.Join(b.work, dir), LogLevel: "info", Logf: b.harnessLog})
	if err != nil {
		return nil, err
	}
	if err := c.StartAll(); err == nil {
		err = c.WaitReady(90 * time.Second)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// single measures against one coordinator daemon with its embedded server: its idle RSS,
// claims/s on one node, and holder processes (renewal CPU, RSS, balance).
func (b *bench) single(ctx context.Context) error {
	b.logf("single node: starting a coordinator daemon (TTL 15s, no workers)")
	c, err := b.startSingle("single")
	if err != nil {
		return err
	}
	defer c.Close()
	n := c.Node(0)
	url := n.ClientURL()
	time.Sleep(5 * time.Second)
	if v, err := rssMB(n.PID()); err == nil {
		b.res.Add("rss_mb_daemon_idle", v, "MB")
	} else {
		b.res.NA("rss_mb_daemon_idle", err.Error())
	}

	for _, conc := range []int{1, 32} {
		name := claimsName("1node", conc)
		r, err := measureClaims(ctx, url, "claims1", 1, conc, b.opts.claimsTime)
		if err != nil {
			b.res.NA(name, err.Error())
			return fmt.Errorf("%s: %w", name, err)
		}
		b.res.Add(name, r.Rate, "claims/s")
		b.res.Sample(name+"_latency_ms", durationsMS(r.Latency)...)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	b.logf("single node: idle holder")
	h, err := b.startHolder(url, "idle", "idle", "i", 0)
	if err != nil {
		return err
	}
	if err := h.WaitReady(time.Minute); err != nil {
		h.Stop()
		return err
	}
	time.Sleep(5 * time.Second)
	if v, err := rssMB(h.PID()); err == nil {
		b.res.Add("rss_mb_holder_idle", v, "MB")
	}
	h.Stop()

	sizes := []int{1000, 10000}
	if b.opts.runs(phaseScale) {
		sizes = sizes[:1] // the scale phase measures the holder of 10,000 (scale.go)
	}
	for _, workers := range sizes {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := b.renew(url, n.PID(), workers); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return b.balance(url)
}

// stopHolder stops a holder (it releases its claims) and reports what it complained about
// in its log, stop included: warnings there are findings, not noise.
func (b *bench) stopHolder(h *holder, what string) {
	t0 := time.Now()
	h.Stop()
	c := h.Complaints()
	if len(c) == 0 {
		return
	}
	msgs := make([]string, 0, len(c))
	for m, n := range c {
		msgs = append(msgs, fmt.Sprintf("%d× %q", n, m))
	}
	sort.Strings(msgs)
	b.logf("  holder (%s) stopped in %v; its log (%s) has warnings: %s", what, time.Since(t0).Round(100*time.Millisecond), h.logPath, strings.Join(msgs, ", "))
	b.res.Note("holder (%s) log warnings, stop included: %s", what, strings.Join(msgs, ", "))
}

func claimsName(where string, conc int) string {
	if conc == 1 {
		return "claims_per_s_" + where + "_seq"
	}
	return fmt.Sprintf("claims_per_s_%s_c%d", where, conc)
}

func durationsMS(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = ms(d)
	}
	return out
}

// renew runs one holder with workers no-op workers at the default TTL and measures its
// CPU (and the daemon's) over the CPU window once every worker is claimed.
func (b *bench) renew(url string, daemonPID, workers int) error {
	b.logf("single node: holder with %d workers, default TTL", workers)
	ns := fmt.Sprintf("renew%d", workers)
	h, err := b.startHolder(url, ns, "holder", "w", workers)
	if err != nil {
		return err
	}
	defer b.stopHolder(h, fmt.Sprintf("%d workers", workers))
	if err := h.WaitReady(time.Minute); err != nil {
		return err
	}
	t0 := time.Now()
	if _, err := waitOwned([]*holder{h}, workers, 2*time.Second, 3*time.Minute); err != nil {
		return err
	}
	b.logf("  all %d claimed after %v; measuring CPU for %v", workers, time.Since(t0).Round(100*time.Millisecond), b.opts.cpuWindow)
	m, err := startCPU(h.PID(), daemonPID)
	if err != nil {
		return err
	}
	r0, e0 := h.renewals.Load(), h.errors.Load()
	time.Sleep(b.opts.cpuWindow)
	pct, err := m.Percent()
	if err != nil {
		return err
	}
	r1, e1 := h.renewals.Load(), h.errors.Load()
	b.res.Add(fmt.Sprintf("renew_cpu_pct_%d", workers), pct[0], "%")
	b.res.Add(fmt.Sprintf("renew_server_cpu_pct_%d", workers), pct[1], "%")
	if workers == 10000 {
		b.res.Add("server_cpu_pct_10000", pct[1], "%") // the name of the scale phase
	}
	b.res.Add(fmt.Sprintf("renewals_per_s_%d", workers), float64(r1-r0)/b.opts.cpuWindow.Seconds(), "renewals/s")
	if e1 > e0 {
		b.res.Note("%d renewal errors while measuring %d workers", e1-e0, workers)
	}
	if workers == 10000 {
		if v, err := rssMB(h.PID()); err == nil {
			b.res.Add("rss_mb_holder_10000", v, "MB")
		}
	}
	if got := h.owned.Load(); got != int64(workers) {
		b.res.Note("holder owned %d of %d workers at the end of the CPU window", got, workers)
	}
	return nil
}

// balance runs three holders with the same 1,000 workers and reads each one's owned
// count from the store once the counts have converged.
func (b *bench) balance(url string) error {
	const workers = 1000
	b.logf("single node: 3 holders × %d workers", workers)
	var hs []*holder
	defer func() {
		for _, h := range hs {
			b.stopHolder(h, "balance "+h.node)
		}
	}()
	for i := range 3 {
		h, err := b.startHolder(url, "balance", fmt.Sprintf("h%d", i), "b", workers)
		if err != nil {
			return err
		}
		hs = append(hs, h)
	}
	for _, h := range hs {
		if err := h.WaitReady(time.Minute); err != nil {
			return err
		}
	}
	t0 := time.Now()
	// Converged: all owned and no count changed for longer than a rebalance takes to begin.
	if _, err := waitOwned(hs, workers, 15*time.Second, 4*time.Minute); err != nil {
		return err
	}
	b.logf("  converged after %v", time.Since(t0).Round(100*time.Millisecond))
	counts, err := ownersIn(url, "balance")
	if err != nil {
		return err
	}
	lo, hi := math.MaxInt, 0
	for _, h := range hs {
		lo, hi = min(lo, counts[h.node]), max(hi, counts[h.node])
	}
	ratio := math.Inf(1)
	if lo > 0 {
		ratio = float64(hi) / float64(lo)
	}
	b.res.Add("balance_max_over_min", ratio, "ratio")
	b.res.Note("balance: owned per holder %v", counts)
	b.balanceCounts = counts
	return nil
}

// ownersIn counts the live claims per node in namespace ns.
func ownersIn(url, ns string) (map[string]int, error) {
	nc, err := nats.Connect(url, nats.Name("bench balance"))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := kv.Open(ctx, nc, kv.Options{Namespace: ns})
	if err != nil {
		return nil, err
	}
	claims, err := st.Workers.ListClaims(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, c := range claims {
		out[c.Claim.Node]++
	}
	return out, nil
}

// probes are the recorder workers of the failover clusters; failovers rotate over them
// so that the owners killed are spread over the nodes.
var probes = []string{"p0", "p1", "p2", "p3", "p4", "p5"}

// ttl2 measures on three nodes at TTL 2s: cron fire delay, claims/s, handoffs and kills.
func (b *bench) ttl2(ctx context.Context) error {
	jobs := []string{"cron0", "cron1"}
	b.logf("three nodes, TTL 2s: starting")
	dir := filepath.Join(b.work, "ttl2")
	bc, err := startBenchCluster(b.bins, dir, 2*time.Second, probes, jobs, b.logf)
	if err != nil {
		b.cronFigures(nil, err.Error())
		return err
	}
	defer b.closeCluster(bc, phaseTTL2)

	since := time.Now().Add(2 * time.Second).Truncate(time.Second)
	b.logf("three nodes: cron jobs for 20s")
	time.Sleep(22 * time.Second) // the measurement window, not synchronisation
	if d, err := cronDelays(filepath.Join(dir, ticksFile), since); err != nil {
		b.cronFigures(nil, err.Error())
	} else {
		b.cronFigures(d, "")
	}

	for _, conc := range []int{1, 32} {
		name := claimsName("3node", conc)
		r, err := measureClaims(ctx, bc.c.ClientURLs(), "claims3", 3, conc, b.opts.claimsTime)
		if err != nil {
			b.res.NA(name, err.Error())
			return fmt.Errorf("%s: %w", name, err)
		}
		b.res.Add(name, r.Rate, "claims/s")
		b.res.Sample(name+"_latency_ms", durationsMS(r.Latency)...)
	}
	b.logf("three nodes, TTL 2s: %d handoffs, %d kills", b.opts.handoffs, b.opts.kills2)
	return measureFailover(ctx, bc, b.opts.kills2, b.opts.handoffs, b.res, "failover_kill_ms_ttl2s")
}

// ttl5 measures kill failovers on three nodes at TTL 5s.
func (b *bench) ttl5(ctx context.Context) error {
	b.logf("three nodes, TTL 5s: starting; %d kills", b.opts.kills5)
	bc, err := startBenchCluster(b.bins, filepath.Join(b.work, "ttl5"), 5*time.Second, probes, nil, b.logf)
	if err != nil {
		return err
	}
	defer b.closeCluster(bc, phaseTTL5)
	return measureFailover(ctx, bc, b.opts.kills5, 0, b.res, "failover_kill_ms_ttl5s")
}

// closeCluster stops a phase's cluster and fails the run on any exactly-once violation
// in its recorders' runs.
func (b *bench) closeCluster(bc *benchCluster, phase string) {
	if err := bc.Close(); err != nil {
		b.fail(phase, fmt.Errorf("exactly-once violations in the runs: %w", err))
	}
}

func (b *bench) cronFigures(d []time.Duration, why string) {
	if why != "" || len(d) == 0 {
		if why == "" {
			why = "no ticks ran"
		}
		b.res.NA("cron_fire_delay_ms", why)
		return
	}
	v := durationsMS(d)
	b.res.Sample("cron_fire_delay_ms", v...)
	b.res.Add("cron_fire_delay_ms_median", median(v), "ms")
	b.res.Add("cron_fire_delay_ms_p99", quantile(v, 0.99), "ms")
}

func (b *bench) failoverFigures(name string, want int) {
	v := b.res.Samples[name]
	if len(v) == 0 {
		b.res.NA(name+"_median", "no samples")
		b.res.NA(name+"_p99", "no samples")
		return
	}
	b.res.Add(name+"_median", median(v), "ms")
	b.res.Add(name+"_p99", quantile(v, 0.99), "ms")
	// The same split by what the killed node was: the leader of the workers stream (the
	// failover waits for JetStream to elect a new one, too) or not (the lease alone).
	var lead, other []float64
	for i, l := range b.res.Samples[name+"_leader"] {
		if l == 1 {
			lead = append(lead, v[i])
		} else {
			other = append(other, v[i])
		}
	}
	for _, part := range []struct {
		suffix string
		v      []float64
	}{{"_not_stream_leader", other}, {"_stream_leader", lead}} {
		if len(part.v) > 0 {
			b.res.Add(fmt.Sprintf("%s%s_median", name, part.suffix), median(part.v), "ms")
		} else {
			b.res.NA(name+part.suffix+"_median", "no such kill")
		}
	}
	b.res.Note("%s: %d of %d kills (%d planned) hit the node leading the workers stream", name, len(lead), len(v), want)
}

func (b *bench) handoffFigures() {
	v := b.res.Samples["handoff_ms"]
	if len(v) == 0 {
		b.res.NA("handoff_ms_median", "no samples")
		b.res.NA("handoff_ms_p99", "no samples")
		handoffLegFigures(b.res)
		return
	}
	b.res.Add("handoff_ms_median", median(v), "ms")
	b.res.Add("handoff_ms_p99", quantile(v, 0.99), "ms")
	handoffLegFigures(b.res)
}

func (b *bench) plots() {
	var made []string
	add := func(path string, err error) {
		if err != nil {
			b.res.Note("plot: %v", err)
			b.logf("plot: %v", err)
			return
		}
		if path != "" {
			made = append(made, path)
		}
	}
	s := b.res.Samples
	if len(s["failover_kill_ms_ttl2s"])+len(s["failover_kill_ms_ttl5s"]) > 0 {
		add(plotFailover(b.opts.out, []failoverSeries{
			{Label: "TTL 2s", MS: s["failover_kill_ms_ttl2s"], Leader: s["failover_kill_ms_ttl2s_leader"], RefMS: references["failover_kill_ms_ttl2s_median"].Value},
			{Label: "TTL 5s", MS: s["failover_kill_ms_ttl5s"], Leader: s["failover_kill_ms_ttl5s_leader"], RefMS: references["failover_kill_ms_ttl5s_median"].Value},
		}))
	}
	if len(s["handoff_ms"]) > 0 {
		add(plotHandoff(b.opts.out, s["handoff_ms"], references["handoff_ms_median"].Value))
	}
	var claims []latencySeries
	for _, n := range []string{"claims_per_s_1node_seq", "claims_per_s_1node_c32", "claims_per_s_3node_seq", "claims_per_s_3node_c32"} {
		if v := s[n+"_latency_ms"]; len(v) > 0 {
			claims = append(claims, latencySeries{Label: claimLabel(n), D: msDurations(v)})
		}
	}
	add(plotLatencyCDF(b.opts.out, "claim_latency.png", "Claim latency (kv Workers.Create of distinct keys)", claims))
	var other []latencySeries
	if v := s["handoff_ms"]; len(v) > 0 {
		other = append(other, latencySeries{Label: "handoff (SIGTERM → running elsewhere)", D: msDurations(v)})
	}
	if v := s["release_ms"]; len(v) > 0 {
		other = append(other, latencySeries{Label: "release (coordinator release → running elsewhere)", D: msDurations(v)})
	}
	if v := s["failover_kill_ms_ttl2s"]; len(v) > 0 {
		other = append(other, latencySeries{Label: "kill failover, TTL 2s", D: msDurations(v)})
	}
	if v := s["failover_kill_ms_ttl5s"]; len(v) > 0 {
		other = append(other, latencySeries{Label: "kill failover, TTL 5s", D: msDurations(v)})
	}
	if v := s["cron_fire_delay_ms"]; len(v) > 0 {
		other = append(other, latencySeries{Label: "cron fire delay", D: msDurations(v)})
	}
	add(plotLatencyCDF(b.opts.out, "failover_latency.png", "Failover, handoff, release and cron delay distributions", other))
	if len(b.balanceCounts) > 0 {
		add(plotBalance(b.opts.out, b.balanceCounts))
	}
	for _, p := range made {
		b.logf("plot: %s", p)
	}
}

func claimLabel(n string) string {
	switch n {
	case "claims_per_s_1node_seq":
		return "1 node, one at a time"
	case "claims_per_s_1node_c32":
		return "1 node, 32 concurrent"
	case "claims_per_s_3node_seq":
		return "3 nodes, one at a time"
	case "claims_per_s_3node_c32":
		return "3 nodes, 32 concurrent"
	}
	return n
}

func msDurations(v []float64) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x * float64(time.Millisecond))
	}
	return out
}
