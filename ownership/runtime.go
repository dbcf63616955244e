package ownership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Runtime states of a worker, as the node that runs it reports them (WorkerRuntime.State)
// and as status shows them (WorkerStatus.State). A claim alone says only that a node holds
// the lease; these say what the worker is doing.
const (
	StateStarting   = "starting"    // the function or command began less than StartGrace ago
	StateRunning    = "running"     // it has been up for StartGrace or longer
	StateBackingOff = "backing off" // it ended with an error; it is restarted after a backoff
	StateFailing    = "failing"     // FailingAfter runs in a row failed: a crash loop
	StateExited     = "exited"      // it returned and its restart policy says not to run it again
	StateStopping   = "stopping"    // its lease is ending (stop, handoff, lost) and it has not returned yet
	StateStandby    = "standby"     // registered on this node, owned by no term here
	// StateOwnerUnknown: the claim names a node that is not a live member, or a node that
	// does not report running the worker (a claim left from an earlier term).
	StateOwnerUnknown = "owner unknown"
	// StateUnclaimed (status only): live nodes register the worker, none holds a claim.
	StateUnclaimed = "unclaimed"
)

// Runtime defaults.
const (
	// DefaultStartGrace is how long a run must last before it counts as running (as
	// supervisord's startsecs): a command that exits at once never shows as running.
	DefaultStartGrace = time.Second
	// FailingAfter consecutive failed runs make a worker "failing".
	FailingAfter = 3
	// stableRun resets the failure count, as it resets the restart backoff.
	stableRun = time.Minute
)

// Exit is how a worker's last run ended.
type Exit struct {
	// Code is the command's exit status; absent when there is none (a Go worker's error, a
	// command that could not start, or one killed by a signal: see Error).
	Code  *int      `json:"code,omitempty"`
	Error string    `json:"error,omitempty"`
	Time  time.Time `json:"time"`
	// Ran is how long the run lasted, e.g. "1.5s".
	Ran string `json:"ran"`
}

// WorkerRuntime is what the node running a worker knows of it.
type WorkerRuntime struct {
	Worker string `json:"worker"`
	// Token of the term this node runs; 0 when it owns no term (standby).
	Token uint64    `json:"token"`
	State string    `json:"state"`
	Since time.Time `json:"since"` // when it entered State (for starting/running: when the run began)
	// Restarts counts the runs after the first in this term.
	Restarts int `json:"restarts"`
	// Failures counts the failed runs in a row (reset by a success or a run of a minute).
	Failures int   `json:"failures"`
	LastExit *Exit `json:"last_exit,omitempty"`
	// NoCalls: the worker has no call handler (WithHandler).
	NoCalls bool `json:"no_calls,omitempty"`
}

// NodeRuntime is a node's answer to a runtime request: every worker registered there.
type NodeRuntime struct {
	Node        string          `json:"node"`
	Incarnation string          `json:"incarnation,omitempty"`
	Time        time.Time       `json:"time"`
	Workers     []WorkerRuntime `json:"workers"`
}

// Worker returns the runtime of worker and whether the node registered it.
func (n NodeRuntime) Worker(worker string) (WorkerRuntime, bool) {
	for _, w := range n.Workers {
		if w.Worker == worker {
			return w, true
		}
	}
	return WorkerRuntime{}, false
}

// RuntimeSubject is where node answers runtime requests in namespace ns.
func RuntimeSubject(ns, node string) string { return ns + ".status." + node }

// ExitCoder is implemented by errors that carry a process exit status
// (supervise.ExitError); Runtime records the code.
type ExitCoder interface{ ExitCode() int }

// Runtime tracks the runs of the workers of one node: wrap each WorkerFunc with Wrap when
// registering it, so that status can tell a running worker
// from one that crash-loops, never started, or whose owner is gone; give it to the engine
// with Engine.SetRuntime. The zero value is not usable: use NewRuntime.
type Runtime struct {
	// StartGrace: see DefaultStartGrace.
	StartGrace time.Duration
	// OnChange, if set, is called (without locks held) after a worker's state changed; the
	// daemon updates its metrics from it.
	OnChange func(WorkerRuntime)

	now func() time.Time
	mu  sync.Mutex
	ws  map[string]*runState
}

type runState struct {
	policy    RestartPolicy
	needStart bool      // WrapProcess: a run is up only once Started says so
	up        bool      // the run is up (its process started)
	upAt      time.Time // when it came up
	token     uint64
	inRun     bool
	runStart  time.Time
	ended     bool // the term's context ended
	returned  bool // the last run returned and the policy does not restart it
	since     time.Time
	restarts  int
	failures  int
	lastExit  *Exit
	lastState string
	stopTerm  func() bool
}

// NewRuntime returns an empty Runtime.
func NewRuntime() *Runtime {
	return &Runtime{StartGrace: DefaultStartGrace, now: time.Now, ws: map[string]*runState{}}
}

// Wrap returns fn recording its runs under name; policy must be the worker's restart policy
// (it tells "backing off" from "exited").
func (r *Runtime) Wrap(name string, policy RestartPolicy, fn WorkerFunc) WorkerFunc {
	r.mu.Lock()
	r.ws[name] = &runState{policy: policy, since: r.now().UTC()}
	r.mu.Unlock()
	return func(ctx context.Context, lease *Lease) error {
		token := lease.Token()
		r.begin(ctx, name, token)
		err := fn(ctx, lease)
		r.finish(ctx, name, token, err)
		return err
	}
}

// WrapProcess is Wrap for a function that starts a process: a run counts as up only once
// Started is called for it (supervise.Spec.OnStart), so that a command that cannot start,
// or takes long to, never shows as running.
func (r *Runtime) WrapProcess(name string, policy RestartPolicy, fn WorkerFunc) WorkerFunc {
	f := r.Wrap(name, policy, fn)
	r.mu.Lock()
	r.ws[name].needStart = true
	r.mu.Unlock()
	return f
}

// Started records that the run of name with token has started its process.
func (r *Runtime) Started(name string, token uint64) {
	r.mu.Lock()
	s := r.ws[name]
	if s == nil || s.token != token || !s.inRun {
		r.mu.Unlock()
		return
	}
	s.up, s.upAt = true, r.now().UTC()
	r.mu.Unlock()
	r.changed(name)
}

// Remove forgets name (after Unregister).
func (r *Runtime) Remove(name string) {
	r.mu.Lock()
	s := r.ws[name]
	delete(r.ws, name)
	r.mu.Unlock()
	if s != nil && s.stopTerm != nil {
		s.stopTerm()
	}
}

func (r *Runtime) begin(ctx context.Context, name string, token uint64) {
	r.mu.Lock()
	s := r.ws[name]
	if s == nil {
		r.mu.Unlock()
		return
	}
	now := r.now().UTC()
	if s.token != token {
		if s.stopTerm != nil {
			s.stopTerm()
		}
		s.token, s.restarts, s.failures, s.ended = token, 0, 0, false
		s.stopTerm = context.AfterFunc(ctx, func() { r.termEnded(name, token) })
	} else {
		s.restarts++
	}
	s.inRun, s.returned, s.runStart, s.since = true, false, now, now
	s.up, s.upAt = !s.needStart, now
	r.mu.Unlock()
	r.changed(name)
}

func (r *Runtime) finish(ctx context.Context, name string, token uint64, err error) {
	r.mu.Lock()
	s := r.ws[name]
	if s == nil || s.token != token {
		r.mu.Unlock()
		return
	}
	now := r.now().UTC()
	ran := now.Sub(s.runStart)
	s.inRun, s.since = false, now
	stopped := ctx.Err() != nil
	if !stopped {
		x := &Exit{Time: now, Ran: ran.Round(time.Millisecond).String()}
		var ec ExitCoder
		if errors.As(err, &ec) && ec.ExitCode() >= 0 {
			c := ec.ExitCode()
			x.Code = &c
		} else if err == nil {
			c := 0
			x.Code = &c
		}
		if err != nil {
			x.Error = err.Error()
		}
		s.lastExit = x
		switch {
		case err == nil:
			s.failures = 0
		case s.up && now.Sub(s.upAt) >= stableRun:
			s.failures = 1
		default:
			s.failures++
		}
		s.returned = s.policy == RestartNever || (s.policy == RestartOnFailure && err == nil)
	}
	if stopped {
		s.token, s.ended = 0, true
	}
	r.mu.Unlock()
	r.changed(name)
}

func (r *Runtime) termEnded(name string, token uint64) {
	r.mu.Lock()
	s := r.ws[name]
	if s == nil || s.token != token {
		r.mu.Unlock()
		return
	}
	s.ended = true
	if !s.inRun {
		s.token = 0 // between runs: the term is over
	}
	s.since = r.now().UTC()
	r.mu.Unlock()
	r.changed(name)
}

// stateLocked derives the state of s at now.
func (r *Runtime) stateLocked(s *runState, now time.Time) string {
	switch {
	case s.token == 0:
		return StateStandby
	case s.ended:
		return StateStopping
	case s.inRun && s.up && now.Sub(s.upAt) >= stableRun:
		return StateRunning
	case s.failures >= FailingAfter:
		return StateFailing
	case s.inRun && (!s.up || now.Sub(s.upAt) < r.StartGrace):
		return StateStarting
	case s.inRun:
		return StateRunning
	case s.returned:
		return StateExited
	}
	return StateBackingOff
}

func (r *Runtime) changed(name string) {
	if r.OnChange == nil {
		return
	}
	if w, ok := r.Get(name); ok {
		r.OnChange(w)
	}
}

// Get returns the runtime of one worker.
func (r *Runtime) Get(name string) (WorkerRuntime, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.ws[name]
	if s == nil {
		return WorkerRuntime{}, false
	}
	return r.snapLocked(name, s, r.now()), true
}

func (r *Runtime) snapLocked(name string, s *runState, now time.Time) WorkerRuntime {
	w := WorkerRuntime{Worker: name, Token: s.token, State: r.stateLocked(s, now), Since: s.since,
		Restarts: s.restarts, Failures: s.failures}
	if s.lastExit != nil {
		x := *s.lastExit
		w.LastExit = &x
	}
	return w
}

// Snapshot returns every registered worker, sorted by name.
func (r *Runtime) Snapshot() []WorkerRuntime {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	out := make([]WorkerRuntime, 0, len(r.ws))
	for name, s := range r.ws {
		out = append(out, r.snapLocked(name, s, now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Worker < out[j].Worker })
	return out
}

// SetRuntime makes the engine answer runtime requests (RuntimeSubject) from rt, whose
// Wrap the registered WorkerFuncs went through. Call it before Start. Without it the engine
// answers with its registered names only, which tells callers that a name exists.
func (e *Engine) SetRuntime(rt *Runtime) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.runtime = rt
}

// serveRuntime answers runtime requests for this node until the returned func is called.
func (e *Engine) serveRuntime() (stop func()) {
	nc := e.store.Conn()
	if nc == nil {
		return func() {}
	}
	sub, err := nc.Subscribe(RuntimeSubject(e.store.Namespace(), e.node), func(m *nats.Msg) {
		e.mu.Lock()
		rt := e.runtime
		calls := make(map[string]bool, len(e.workers))
		for name, w := range e.workers {
			calls[name] = w.opts.handler != nil
		}
		e.mu.Unlock()
		nr := NodeRuntime{Node: e.node, Incarnation: e.incarnation, Time: e.cfg.Clock.Now().UTC()}
		var tracked []WorkerRuntime
		if rt != nil {
			tracked = rt.Snapshot()
		}
		for _, w := range tracked {
			if c, ok := calls[w.Worker]; ok {
				w.NoCalls = !c
				nr.Workers = append(nr.Workers, w)
				delete(calls, w.Worker)
			}
		}
		for n, c := range calls { // registered without Runtime.Wrap: the name only
			nr.Workers = append(nr.Workers, WorkerRuntime{Worker: n, NoCalls: !c})
		}
		sort.Slice(nr.Workers, func(i, j int) bool { return nr.Workers[i].Worker < nr.Workers[j].Worker })
		b, _ := json.Marshal(nr)
		_ = m.Respond(b)
	})
	if err != nil {
		e.log.Error("cannot answer runtime requests", "subject", RuntimeSubject(e.store.Namespace(), e.node), "err", err)
		return func() {}
	}
	return func() { _ = sub.Unsubscribe() }
}

// ErrNoRuntime is returned by ReadRuntime for a node that serves no runtime requests (a
// library node that does not run Runtime.Serve).
var ErrNoRuntime = errors.New("ownership: node serves no runtime requests")

// ReadRuntime asks node for the runtime of its workers.
func ReadRuntime(ctx context.Context, nc *nats.Conn, ns, node string) (NodeRuntime, error) {
	m, err := nc.RequestWithContext(ctx, RuntimeSubject(ns, node), nil)
	if errors.Is(err, nats.ErrNoResponders) {
		return NodeRuntime{}, fmt.Errorf("%w: %s", ErrNoRuntime, node)
	}
	if err != nil {
		return NodeRuntime{}, fmt.Errorf("ownership: runtime of node %s: %w", node, err)
	}
	var nr NodeRuntime
	if err := json.Unmarshal(m.Data, &nr); err != nil {
		return NodeRuntime{}, fmt.Errorf("ownership: runtime of node %s is not JSON: %w", node, err)
	}
	return nr, nil
}

// readRuntimes asks every node concurrently, each bounded by timeout.
func readRuntimes(ctx context.Context, nc *nats.Conn, ns string, nodes []string, timeout time.Duration) map[string]runtimeAnswer {
	out := make(map[string]runtimeAnswer, len(nodes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			actx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			nr, err := ReadRuntime(actx, nc, ns, n)
			mu.Lock()
			out[n] = runtimeAnswer{nr, err}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

type runtimeAnswer struct {
	rt  NodeRuntime
	err error
}
