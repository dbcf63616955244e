package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Timeouts of Node operations.
const (
	// TermTimeout bounds Term: the coordinator's ShutdownGrace (30s) plus slack.
	TermTimeout = 45 * time.Second
	// KillTimeout bounds how long Kill waits for the process to be gone.
	KillTimeout = 10 * time.Second
	// quitTimeout bounds how long the reaper may take to kill a node's tree.
	quitTimeout = 15 * time.Second
)

// httpClient keeps no idle connections: no goroutine outlives a request, and a killed
// node's connections are not reused.
var httpClient = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// Node is one coordinator of a Cluster. Its process can be killed, stopped and started
// again on the same ports and data directory.
type Node struct {
	c         *Cluster
	index     int
	name      string
	dir       string
	logPath   string
	httpPort  int
	client    int // embedded client port; 0 in external mode
	routePort int // embedded route port; 0 in external mode
	natsURL   string
	args      []string

	mu     sync.Mutex
	proc   *process   // current process; nil before the first Start
	old    []*process // earlier processes, their reapers still collecting leftovers
	paused bool
}

// Name is the node's name (--name), also its embedded server's name.
func (n *Node) Name() string { return n.name }

// Index is the node's position in its Cluster.
func (n *Node) Index() int { return n.index }

// ClientURL is the NATS URL of the node's embedded server, or its --nats URL.
func (n *Node) ClientURL() string { return n.natsURL }

// RouteAddr is the embedded server's route address ("" in external mode).
func (n *Node) RouteAddr() string {
	if n.routePort == 0 {
		return ""
	}
	return "127.0.0.1:" + strconv.Itoa(n.routePort)
}

// HTTPAddr is where the node serves /healthz, /readyz, /metrics and /status.
func (n *Node) HTTPAddr() string { return "127.0.0.1:" + strconv.Itoa(n.httpPort) }

// LogPath is the node's JSON log (stdout and stderr of every incarnation, appended).
func (n *Node) LogPath() string { return n.logPath }

// Dir is the node's directory (its data directory is Dir()/data).
func (n *Node) Dir() string { return n.dir }

// Args are the node's `coordinator run` arguments.
func (n *Node) Args() []string { return append([]string(nil), n.args...) }

func (n *Node) current() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// Start starts the node's coordinator process. It does not wait for it to be ready.
func (n *Node) Start() error {
	n.c.helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && n.proc.running() {
		return fmt.Errorf("cluster: %s is already running (pid %d)", n.name, n.proc.pid)
	}
	logf, err := os.OpenFile(n.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	defer logf.Close() // the reaper has its own copy
	b := n.c.opts.Binaries
	p, err := startProcess(b.Reaper, append([]string{b.Coordinator}, n.args...), n.c.env(), logf)
	if err != nil {
		return err
	}
	if n.proc != nil {
		n.old = append(n.old, n.proc)
	}
	n.proc, n.paused = p, false
	n.c.acted()
	n.c.logf("cluster: %s started, pid %d (log %s)", n.name, p.pid, n.logPath)
	return nil
}

// PID is the pid of the coordinator process (the latest one), or 0 before Start.
func (n *Node) PID() int {
	if p := n.current(); p != nil {
		return p.pid
	}
	return 0
}

// Running reports whether the coordinator process runs (a paused one does).
func (n *Node) Running() bool {
	p := n.current()
	return p != nil && p.running()
}

// Paused reports whether Stop paused the process and Cont has not resumed it.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused && n.proc != nil && n.proc.running()
}

// Exit waits up to timeout for the process to end and returns how it ended.
func (n *Node) Exit(timeout time.Duration) (ExitStatus, error) {
	p := n.current()
	if p == nil {
		return ExitStatus{}, ErrNotRunning
	}
	return p.wait(timeout)
}

// Kill SIGKILLs the coordinator process and waits until it is gone. Its supervised
// commands are left to their watchdogs, as after a real crash.
func (n *Node) Kill() error {
	n.c.helper()
	p := n.current()
	if p == nil {
		return ErrNotRunning
	}
	if err := p.signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("cluster: kill %s: %w", n.name, err)
	}
	n.c.acted()
	if _, err := p.wait(KillTimeout); err != nil {
		return err
	}
	n.c.logf("cluster: %s killed (pid %d)", n.name, p.pid)
	return nil
}

// Term sends SIGTERM (a graceful shutdown: workers stop, claims are released) and waits
// for the process to exit, up to TermTimeout. A paused process is resumed first.
func (n *Node) Term() (ExitStatus, error) {
	n.c.helper()
	p := n.current()
	if p == nil {
		return ExitStatus{}, ErrNotRunning
	}
	if err := p.signal(syscall.SIGTERM); err != nil {
		return ExitStatus{}, fmt.Errorf("cluster: term %s: %w", n.name, err)
	}
	n.c.acted()
	if n.Paused() {
		_ = n.Cont()
	}
	st, err := p.wait(TermTimeout)
	if err != nil {
		return st, err
	}
	n.c.logf("cluster: %s terminated (%v)", n.name, st)
	return st, nil
}

// Signal sends sig to the coordinator process only.
func (n *Node) Signal(sig syscall.Signal) error {
	p := n.current()
	if p == nil {
		return ErrNotRunning
	}
	n.c.acted()
	return p.signal(sig)
}

// Reload sends SIGHUP: the coordinator reads its config file again (see
// Cluster.WriteConfig).
func (n *Node) Reload() error {
	if err := n.Signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("cluster: reload %s: %w", n.name, err)
	}
	n.c.logf("cluster: %s reloads its config", n.name)
	return nil
}

// Stop pauses the coordinator process with SIGSTOP — the process only, not its
// watchdogs or supervised commands — and waits until the kernel shows it stopped.
func (n *Node) Stop() error {
	p := n.current()
	if p == nil {
		return ErrNotRunning
	}
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("cluster: stop %s: %w", n.name, err)
	}
	n.c.acted()
	n.mu.Lock()
	n.paused = true
	n.mu.Unlock()
	return WaitFor(5*time.Second, n.name+" to be stopped", func() bool { return stopped(p.pid) || !p.running() })
}

// Cont resumes a process paused by Stop.
func (n *Node) Cont() error {
	p := n.current()
	if p == nil {
		return ErrNotRunning
	}
	if err := p.signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("cluster: cont %s: %w", n.name, err)
	}
	n.c.acted()
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
	return nil
}

// Restart stops the node gracefully if it runs (Term), then starts it again with the
// same name, ports and data directory. It does not wait for it to be ready.
func (n *Node) Restart() error {
	n.c.helper()
	if n.Running() {
		if _, err := n.Term(); err != nil {
			return err
		}
	}
	return n.Start()
}

// Processes lists the live processes of the node's current and earlier incarnations:
// the coordinator, the watchdogs and the supervised commands, and whatever they started.
// After Kill it shrinks to nothing as the watchdogs stop their commands.
func (n *Node) Processes() []int {
	n.mu.Lock()
	procs := append([]*process(nil), n.old...)
	if n.proc != nil {
		procs = append(procs, n.proc)
	}
	n.mu.Unlock()
	var out []int
	for _, p := range procs {
		out = append(out, p.descendants()...)
	}
	return out
}

// shutdown kills every process of the node, old incarnations included.
func (n *Node) shutdown() error {
	n.mu.Lock()
	procs := append([]*process(nil), n.old...)
	if n.proc != nil {
		procs = append(procs, n.proc)
	}
	n.mu.Unlock()
	var errs []error
	for _, p := range procs {
		errs = append(errs, p.quit(quitTimeout))
	}
	return errors.Join(errs...)
}

// Ready reports whether GET /readyz answers 200: the node can claim.
func (n *Node) Ready() bool {
	if !n.Running() || n.Paused() {
		return false
	}
	resp, err := httpClient.Get("http://" + n.HTTPAddr() + "/readyz")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// WaitReady waits until Ready, failing early if the process exits.
func (n *Node) WaitReady(timeout time.Duration) error {
	var exited bool
	err := WaitFor(timeout, n.name+" to be ready", func() bool {
		if !n.Running() {
			exited = true
			return true
		}
		// Ready, and still running: the answer came from this node's process.
		return n.Ready() && n.Running()
	})
	if exited {
		st, _ := n.Exit(0)
		return fmt.Errorf("cluster: %s exited (%v) before it was ready; see %s", n.name, st, n.logPath)
	}
	return err
}

// Status is the node's view of the cluster: GET /status, decoded.
func (n *Node) Status() (Status, error) {
	var s Status
	resp, err := httpClient.Get("http://" + n.HTTPAddr() + "/status")
	if err != nil {
		return s, fmt.Errorf("cluster: %s /status: %w", n.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return s, fmt.Errorf("cluster: %s /status: %w", n.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("cluster: %s /status: %s: %s", n.name, resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return s, fmt.Errorf("cluster: %s /status: %w", n.name, err)
	}
	return s, nil
}

// Owner returns the claim of worker as this node sees it, or ErrNotOwned.
func (n *Node) Owner(worker string) (WorkerStatus, error) {
	s, err := n.Status()
	if err != nil {
		return WorkerStatus{}, err
	}
	w, ok := s.Worker(worker)
	if !ok {
		return WorkerStatus{}, fmt.Errorf("%w: %s (asked %s)", ErrNotOwned, worker, n.name)
	}
	return w, nil
}

// CLI runs an operator command of the coordinator binary against this node's NATS:
// `coordinator SUB --nats URL [--namespace NS] ARGS...`, and returns its stdout. An exit
// status other than 0 is an error that carries stderr.
func (n *Node) CLI(ctx context.Context, sub string, args ...string) ([]byte, error) {
	argv := []string{sub, "--nats", n.natsURL}
	if ns := n.c.opts.Namespace; ns != "" {
		argv = append(argv, "--namespace", ns)
	}
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, n.c.opts.Binaries.Coordinator, argv...)
	cmd.Env = n.c.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("cluster: coordinator %s: %w: %s", sub, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// StatusCLI runs `coordinator status --json` against this node and decodes it.
func (n *Node) StatusCLI(ctx context.Context) (Status, error) {
	var s Status
	out, err := n.CLI(ctx, "status", "--json")
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return s, fmt.Errorf("cluster: status --json: %w", err)
	}
	return s, nil
}
