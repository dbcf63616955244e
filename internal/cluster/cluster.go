package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TB is what the harness needs of a test: *testing.T and *testing.B satisfy it, and so
// does a small adapter in a plain program (the chaos suite), or use New and Close.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Cleanup(func())
}

// Defaults of Options.
const (
	DefaultNodes        = 3
	DefaultTTL          = 3 * time.Second
	DefaultReadyTimeout = 90 * time.Second
)

// Options describe a cluster of coordinator processes.
type Options struct {
	// Nodes is the number of coordinator processes. Default 3.
	Nodes int
	// TTL is the lease TTL (--ttl); the other timings derive from it. Default 3s. Below
	// 15s a three-node cluster stops workers while a JetStream leader is re-elected.
	TTL time.Duration
	// Workers are registered on every node. A worker without a Command runs the recorder,
	// which logs its runs to the cluster's runs.log (see Cluster.Runs).
	Workers []WorkerSpec
	// Config, when set, is the whole YAML config file given to every node instead of the
	// one made from Workers. Per-node settings (name, ports, data) are flags and win.
	Config string
	// ExtraFlags are appended to every node's `coordinator run` flags.
	ExtraFlags []string
	// Namespace is --namespace; "" keeps the coordinator's default (coord).
	Namespace string
	// NATS selects external mode: no embedded servers; node i connects to NATS[i], or to
	// NATS[0] when there is one entry. Each entry may be a comma separated URL list.
	NATS []string
	// NamePrefix names the nodes NamePrefix0, NamePrefix1, … Default "n".
	NamePrefix string
	// LogLevel of the nodes' JSON logs. Default "debug".
	LogLevel string
	// Env is added to each node's environment. The test's own COORD_* variables are not
	// passed on, so that a developer's settings cannot leak into the cluster.
	Env []string
	// Dir holds everything of the cluster. Default: the test's TempDir (Start with a TB
	// that has one) or a new temporary directory removed by Close.
	Dir string
	// Binaries to run. Default: Build("") (built once per process).
	Binaries Binaries
	// NoStart creates the nodes without starting any: start them with Node.Start.
	NoStart bool
	// ReadyTimeout bounds how long Start waits for every node to be ready (/readyz).
	// Default 90s. Negative: do not wait.
	ReadyTimeout time.Duration
	// Logf receives the harness's own log lines (node started, killed, …). Start sets it
	// to the TB's Logf when nil.
	Logf func(format string, args ...any)
}

// WorkerSpec is a supervised worker registered on every node.
type WorkerSpec struct {
	Name string
	// Command is the argv. Default: the recorder, logging to the cluster's runs.log.
	Command []string
	Env     map[string]string
	// Restart: always (default), on-failure or never.
	Restart string
	// StopSignal, e.g. SIGTERM (default).
	StopSignal string
	// StopGrace before SIGKILL on a planned stop. Default 10s (the coordinator's).
	StopGrace time.Duration
}

// Cluster is a set of coordinator processes on loopback, each with its own ports, data
// directory and JSON log, started through a reaper process that collects everything they
// leave behind. Close (or the TB's cleanup) kills every process it started.
type Cluster struct {
	opts    Options
	dir     string
	ownDir  bool
	cfgPath string
	nodes   []*Node
	ports   *portReservation
	failed  func() bool
	helper  func() // the TB's Helper: log lines point at the test's call

	closeOnce sync.Once

	lastAction atomic.Int64 // Mono of the last Start, Kill, Term, Stop, Cont or Signal
}

// Start creates and starts a cluster, registers Close with tb.Cleanup and waits until
// every node is ready (unless opts.NoStart or a negative ReadyTimeout). On error the
// processes already started are stopped again.
func Start(tb TB, opts Options) (*Cluster, error) {
	tb.Helper()
	if opts.Logf == nil {
		opts.Logf = tb.Logf
	}
	if opts.Dir == "" {
		if td, ok := tb.(interface{ TempDir() string }); ok {
			opts.Dir = td.TempDir()
		}
	}
	c, err := New(opts)
	if err != nil {
		return nil, err
	}
	if f, ok := tb.(interface{ Failed() bool }); ok {
		c.failed = f.Failed
	}
	c.helper = tb.Helper
	tb.Cleanup(c.Close)
	if err := c.start(); err != nil {
		c.dumpLogs()
		c.Close()
		return nil, err
	}
	return c, nil
}

// New prepares a cluster without starting it and without a TB: call StartAll (or each
// Node's Start) and, at the end, Close.
func New(opts Options) (*Cluster, error) {
	if opts.Nodes == 0 {
		opts.Nodes = DefaultNodes
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.NamePrefix == "" {
		opts.NamePrefix = "n"
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if len(opts.NATS) > 1 && len(opts.NATS) != opts.Nodes {
		return nil, fmt.Errorf("cluster: %d NATS URLs for %d nodes: give one for all or one per node", len(opts.NATS), opts.Nodes)
	}
	if opts.Binaries == (Binaries{}) {
		b, err := Build("")
		if err != nil {
			return nil, err
		}
		opts.Binaries = b
	}
	c := &Cluster{opts: opts, dir: opts.Dir, failed: func() bool { return false }, helper: func() {}}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "coordinator-cluster-")
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		c.dir, c.ownDir = d, true
	}
	if err := os.MkdirAll(filepath.Join(c.dir, "locks"), 0o755); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	cfg := opts.Config
	if cfg == "" {
		cfg = c.configYAML()
	}
	c.cfgPath = filepath.Join(c.dir, "config.yaml")
	if err := os.WriteFile(c.cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}

	external := len(opts.NATS) > 0
	res, err := reservePorts(3 * opts.Nodes)
	if err != nil {
		return nil, err
	}
	c.ports = res
	ports := res.ports
	for i := 0; i < opts.Nodes; i++ {
		n := &Node{
			c:         c,
			index:     i,
			name:      opts.NamePrefix + strconv.Itoa(i),
			httpPort:  ports[3*i],
			client:    ports[3*i+1],
			routePort: ports[3*i+2],
		}
		n.dir = filepath.Join(c.dir, n.name)
		n.logPath = filepath.Join(n.dir, "coordinator.log")
		if external {
			n.natsURL = opts.NATS[min(i, len(opts.NATS)-1)]
			n.client, n.routePort = 0, 0
		} else {
			n.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", n.client)
		}
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			res.release()
			return nil, fmt.Errorf("cluster: %w", err)
		}
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		n.args = c.runArgs(n)
	}
	return c, nil
}

func (c *Cluster) start() error {
	c.helper()
	if c.opts.NoStart {
		return nil
	}
	if err := c.StartAll(); err != nil {
		return err
	}
	if c.opts.ReadyTimeout < 0 {
		return nil
	}
	t0 := time.Now()
	if err := c.WaitReady(c.opts.ReadyTimeout); err != nil {
		return err
	}
	c.logf("cluster: %d nodes ready in %v", len(c.nodes), time.Since(t0).Round(time.Millisecond))
	return nil
}

// StartAll starts every node that is not running.
func (c *Cluster) StartAll() error {
	c.helper()
	for _, n := range c.nodes {
		if n.Running() {
			continue
		}
		if err := n.Start(); err != nil {
			return err
		}
	}
	return nil
}

// WaitReady waits until every running node answers /readyz with 200.
func (c *Cluster) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, n := range c.nodes {
		if !n.Running() {
			continue
		}
		if err := n.WaitReady(time.Until(deadline)); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) logf(format string, args ...any) {
	c.helper()
	c.opts.Logf(format, args...)
}

// runArgs are node n's `coordinator run` arguments.
func (c *Cluster) runArgs(n *Node) []string {
	o := c.opts
	args := []string{"run", "--config", c.cfgPath, "--name", n.name,
		"--http", n.HTTPAddr(), "--ttl", o.TTL.String(),
		"--log-format", "json", "--log-level", o.LogLevel}
	if o.Namespace != "" {
		args = append(args, "--namespace", o.Namespace)
	}
	if len(o.NATS) > 0 {
		args = append(args, "--nats", n.natsURL)
	} else {
		args = append(args, "--data", filepath.Join(n.dir, "data"), "--listen", fmt.Sprintf("127.0.0.1:%d", n.client))
		if len(c.nodes) > 1 {
			peers := make([]string, len(c.nodes))
			for i, p := range c.nodes {
				peers[i] = fmt.Sprintf("127.0.0.1:%d", p.routePort)
			}
			args = append(args, "--cluster-listen", fmt.Sprintf("127.0.0.1:%d", n.routePort),
				"--peers", strings.Join(peers, ","))
		}
	}
	return append(args, o.ExtraFlags...)
}

// env is the environment of every node: the test's own without COORD_*, plus Options.Env.
func (c *Cluster) env() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COORD_") {
			out = append(out, kv)
		}
	}
	return append(out, c.opts.Env...)
}

// configYAML is the config file made from Options.Workers.
func (c *Cluster) configYAML() string {
	var b bytes.Buffer
	q := func(s string) string { j, _ := json.Marshal(s); return string(j) }
	if len(c.opts.Workers) == 0 {
		return "workers: []\n"
	}
	b.WriteString("workers:\n")
	for _, w := range c.opts.Workers {
		fmt.Fprintf(&b, "  - name: %s\n", q(w.Name))
		cmd := w.Command
		if len(cmd) == 0 {
			cmd = []string{c.opts.Binaries.Recorder, c.dir}
		}
		parts := make([]string, len(cmd))
		for i, a := range cmd {
			parts[i] = q(a)
		}
		fmt.Fprintf(&b, "    command: [%s]\n", strings.Join(parts, ", "))
		if w.Restart != "" {
			fmt.Fprintf(&b, "    restart: %s\n", q(w.Restart))
		}
		if w.StopSignal != "" {
			fmt.Fprintf(&b, "    stop_signal: %s\n", q(w.StopSignal))
		}
		if w.StopGrace != 0 {
			fmt.Fprintf(&b, "    stop_grace: %s\n", w.StopGrace)
		}
		if len(w.Env) > 0 {
			keys := make([]string, 0, len(w.Env))
			for k := range w.Env {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			b.WriteString("    env:\n")
			for _, k := range keys {
				fmt.Fprintf(&b, "      %s: %s\n", q(k), q(w.Env[k]))
			}
		}
	}
	return b.String()
}

// Close kills every process the cluster started (each node's whole process tree) and
// removes the cluster's directory if Close made it. When the test failed, it logs the
// end of each node's log first. Safe to call more than once.
func (c *Cluster) Close() {
	c.closeOnce.Do(func() {
		failed := c.failed()
		if failed {
			c.dumpLogs()
		}
		var wg sync.WaitGroup
		for _, n := range c.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := n.shutdown(); err != nil {
					c.logf("cluster: %s: %v", n.name, err)
				}
			}()
		}
		wg.Wait()
		if c.ports != nil {
			c.ports.release()
		}
		if c.ownDir {
			if failed && os.Getenv("CLUSTER_KEEP") != "" {
				c.logf("cluster: kept %s", c.dir)
				return
			}
			_ = os.RemoveAll(c.dir)
		}
	})
}

// dumpLogs logs the last lines of each node's log that matter most.
func (c *Cluster) dumpLogs() {
	for _, n := range c.nodes {
		data, err := os.ReadFile(n.logPath)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		var keep []string
		for _, l := range lines {
			if strings.Contains(l, `"level":"DEBUG"`) && !strings.Contains(l, `"worker"`) {
				continue
			}
			if len(l) > 400 {
				l = l[:400] + "…"
			}
			keep = append(keep, l)
		}
		if len(keep) > 40 {
			keep = keep[len(keep)-40:]
		}
		c.logf("cluster: last lines of %s (%s):\n%s", n.name, n.logPath, strings.Join(keep, "\n"))
	}
	if runs, err := c.Runs(); err == nil {
		var b strings.Builder
		for _, r := range runs {
			fmt.Fprintf(&b, "  %v\n", r)
		}
		c.logf("cluster: runs:\n%s", b.String())
	}
}

// LastAction is when the harness last started, killed, terminated, stopped, resumed or
// signalled a node of this cluster (0 if never). Membership, and so placement, changes in
// the seconds after such an action: wait a while past it before taking a cluster as
// settled.
func (c *Cluster) LastAction() Mono { return Mono(c.lastAction.Load()) }

func (c *Cluster) acted() { c.lastAction.Store(int64(MonoNow())) }

// Dir is the cluster's directory.
func (c *Cluster) Dir() string { return c.dir }

// ConfigPath is the config file every node runs with.
func (c *Cluster) ConfigPath() string { return c.cfgPath }

// WriteConfig replaces the config file every node runs with. A running node reads it
// again on Node.Reload (SIGHUP) or when it is started again. The file is written aside and
// renamed into place, so that a node never reads half of it.
func (c *Cluster) WriteConfig(yaml string) error {
	tmp := c.cfgPath + ".new"
	if err := os.WriteFile(tmp, []byte(yaml), 0o644); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if err := os.Rename(tmp, c.cfgPath); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}

// Binaries are the programs the cluster runs.
func (c *Cluster) Binaries() Binaries { return c.opts.Binaries }

// TTL is the lease TTL the nodes run with.
func (c *Cluster) TTL() time.Duration { return c.opts.TTL }

// Namespace is the namespace the nodes run with ("coord" unless set).
func (c *Cluster) Namespace() string {
	if c.opts.Namespace == "" {
		return "coord"
	}
	return c.opts.Namespace
}

// Len is the number of nodes.
func (c *Cluster) Len() int { return len(c.nodes) }

// Node returns node i (0-based). It panics when i is out of range.
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// Nodes returns all nodes.
func (c *Cluster) Nodes() []*Node { return append([]*Node(nil), c.nodes...) }

// NodeByName returns the node called name, or nil.
func (c *Cluster) NodeByName(name string) *Node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// ClientURL is the NATS URL of node i: its embedded server, or its --nats URL.
func (c *Cluster) ClientURL(i int) string { return c.nodes[i].ClientURL() }

// ClientURLs lists the NATS URLs of the running nodes, comma separated.
func (c *Cluster) ClientURLs() string {
	var urls []string
	for _, n := range c.nodes {
		if n.Running() {
			urls = append(urls, n.ClientURL())
		}
	}
	return strings.Join(urls, ",")
}

// RunsPath is the runs.log the recorders of this cluster append to.
func (c *Cluster) RunsPath() string { return filepath.Join(c.dir, RunsFile) }

// Runs reads the recorders' runs so far (ReadRuns).
func (c *Cluster) Runs() ([]Run, error) { return ReadRuns(c.RunsPath()) }

// WaitRun waits until a run of worker satisfying match (nil: any) has started and
// returns the first such run.
func (c *Cluster) WaitRun(worker string, timeout time.Duration, match func(Run) bool) (Run, error) {
	var found Run
	var lastErr error
	err := WaitFor(timeout, "a run of "+worker, func() bool {
		runs, err := c.Runs()
		if err != nil {
			lastErr = err
			return false
		}
		for _, r := range RunsOf(runs, worker) {
			if match == nil || match(r) {
				found = r
				return true
			}
		}
		return false
	})
	if err != nil && lastErr != nil {
		err = fmt.Errorf("%w (last read: %v)", err, lastErr)
	}
	return found, err
}

// ErrNotOwned is returned by Owner when no live claim exists for the worker.
var ErrNotOwned = errors.New("cluster: worker not owned")

// Owner asks the running nodes in turn for the claim of worker (GET /status).
func (c *Cluster) Owner(worker string) (WorkerStatus, error) {
	var lastErr error = ErrNotRunning
	for _, n := range c.nodes {
		if !n.Running() || n.Paused() {
			continue
		}
		w, err := n.Owner(worker)
		if err == nil || errors.Is(err, ErrNotOwned) {
			return w, err
		}
		lastErr = err
	}
	return WorkerStatus{}, lastErr
}

// WaitOwner waits until some node owns worker and match (nil: any owner) accepts the claim.
func (c *Cluster) WaitOwner(worker string, timeout time.Duration, match func(WorkerStatus) bool) (WorkerStatus, error) {
	var w WorkerStatus
	err := WaitFor(timeout, "an owner of "+worker, func() bool {
		var err error
		w, err = c.Owner(worker)
		return err == nil && (match == nil || match(w))
	})
	return w, err
}

// WorkersStream is the JetStream stream behind the workers bucket, e.g. KV_coord_workers.
func (c *Cluster) WorkersStream() string { return "KV_" + c.Namespace() + "_workers" }

// StreamLeader returns the name of the server that leads stream (for example
// WorkersStream()), asking the running nodes' NATS servers. In embedded mode it is the
// name of a node (see NodeByName).
func (c *Cluster) StreamLeader(stream string) (string, error) {
	urls := c.ClientURLs()
	if urls == "" {
		return "", ErrNotRunning
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return streamLeader(ctx, urls, stream)
}

// MoveStreamLeader makes server (a node name in embedded mode) the leader of stream: it
// asks the current leader to step down in favour of server and waits up to timeout until
// the cluster reports server as the leader. JetStream refuses while server is behind.
func (c *Cluster) MoveStreamLeader(stream, server string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		leader, err := c.StreamLeader(stream)
		if err == nil && leader == server {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster: %s did not become the leader of %s within %v (leader %q, %v)", server, stream, timeout, leader, err)
		}
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = moveStreamLeader(ctx, c.ClientURLs(), stream, server)
			cancel()
			if err != nil {
				c.logf("cluster: %v", err)
			}
		}
		_ = WaitFor(2*time.Second, "the step-down", func() bool {
			l, err := c.StreamLeader(stream)
			return err == nil && l == server
		})
	}
}

// StreamInfo asks the running nodes' NATS servers about stream (config, state, replicas).
func (c *Cluster) StreamInfo(stream string) (*jetstream.StreamInfo, error) {
	urls := c.ClientURLs()
	if urls == "" {
		return nil, ErrNotRunning
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return streamInfo(ctx, urls, stream)
}

// WaitFor polls cond every 20 ms until it holds or timeout passes; the error names what.
func WaitFor(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster: timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
