package ownership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nuid"

	"github.com/jetcoord/coordinator/kv"
)

// WorkerFunc is the work that runs while this node owns a worker. ctx ends when the lease
// ends — deadline passed, claim lost, or a planned stop; context.Cause(ctx) tells which
// (ErrLeaseExpired, ErrLeaseLost, ErrStopping). The function must return soon after ctx ends:
// within Config.FenceGrace when the lease is lost, or another node may start the worker while
// this one still runs.
type WorkerFunc func(ctx context.Context, lease *Lease) error

// RestartPolicy says what happens when a worker function returns while its node still owns it.
type RestartPolicy int

const (
	// RestartAlways runs the function again after a backoff, whatever it returned.
	RestartAlways RestartPolicy = iota
	// RestartOnFailure runs it again only after an error or a panic; after a nil return the
	// node keeps the claim and does not run the worker again until the claim moves.
	RestartOnFailure
	// RestartNever never runs it again within the ownership term.
	RestartNever
)

type workerOptions struct {
	restart RestartPolicy
	handler Handler
}

// WorkerOption configures one registered worker.
type WorkerOption func(*workerOptions)

// WithRestart sets the worker's restart policy. Default RestartAlways.
func WithRestart(p RestartPolicy) WorkerOption {
	return func(o *workerOptions) { o.restart = p }
}

type options struct {
	log         *slog.Logger
	metrics     Metrics
	incarnation string
	noEvents    bool
	info        NodeInfo
	expect      int
}

// WithExpectedMembers makes a starting node wait, before its first claims, until n nodes
// are members or one TTL has passed. A cluster that starts together then spreads workers at
// once instead of giving everything to the first node up and rebalancing.
func WithExpectedMembers(n int) Option {
	return func(o *options) error { o.expect = n; return nil }
}

// NodeInfo is what a node publishes about itself in its membership record.
type NodeInfo struct {
	Addresses []string // where the node serves (client URL, HTTP)
	Version   string
	Weight    int // placement weight; default 1
}

// WithNodeInfo sets what the node publishes in its membership record.
func WithNodeInfo(info NodeInfo) Option {
	return func(o *options) error {
		if info.Weight < 0 {
			return fmt.Errorf("ownership: weight %d must be positive", info.Weight)
		}
		if info.Weight == 0 {
			info.Weight = 1
		}
		o.info = info
		return nil
	}
}

// Option configures an Engine.
type Option func(*options) error

// WithLogger sets the logger. Default slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("ownership: WithLogger(nil)")
		}
		o.log = l
		return nil
	}
}

// WithMetrics sets the metrics sink. Default NopMetrics.
func WithMetrics(m Metrics) Option {
	return func(o *options) error {
		if m == nil {
			return errors.New("ownership: WithMetrics(nil)")
		}
		o.metrics = m
		return nil
	}
}

// WithoutEvents turns off lifecycle events.
func WithoutEvents() Option {
	return func(o *options) error { o.noEvents = true; return nil }
}

// Engine is the lease engine of one node: it claims, renews and releases the workers
// registered on it and runs each one while it owns it.
type Engine struct {
	store       *kv.Store
	claims      *kv.Bucket
	node        string
	incarnation string
	callKey     callKey           // signs call replies; its public half is in every claim we write
	claimMeta   map[string]string // the Meta of every claim we write (shared: never modified)
	lease       string            // leaseName(), kept: every claim we write names it
	cfg         Config
	log         *slog.Logger
	metrics     Metrics
	events      *Publisher

	// Context of the engine's goroutines; cancelled last, after workers stopped.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// stopCtx ends at Close's hard deadline (ShutdownGrace + FenceGrace after Close began):
	// stops and releases still under way then give up, leaving claims to expire.
	stopCtx     context.Context
	stopCancel  context.CancelFunc
	unwatchStop func() bool // stops closeTerms from running when stopCtx ends
	closeErr    error

	termsMu sync.Mutex
	terms   map[string]*liveTerm // live terms by worker name (term.go)

	maxRev   atomic.Uint64 // highest claims revision seen: a recreated bucket starts above it
	watching atomic.Bool   // the claims watch is up and synced: /readyz says ready only then
	// claimsCreated is when the workers bucket's stream was created, as last checked (only
	// by watchClaims).
	claimsCreated time.Time

	mu      sync.Mutex
	workers map[string]*worker
	started bool
	closing bool

	synced    chan struct{}
	closeOnce sync.Once
	closed    chan struct{}

	info          NodeInfo
	started0      time.Time
	members       map[string]Member
	memberRenewed time.Time       // send time of the last successful membership write
	memberStop    chan struct{}   // closed by Close after the workers stopped
	memberWrite   chan chan error // write the membership record now and reply
	draining      bool
	membersSynced chan struct{}
	ops           chan struct{} // bounds bursty claims
	releases      chan struct{} // bounds releases in flight (stop.go)
	renewals      *renewWatch   // notes failed and slow renewals for paced stops
	drainGen      uint64        // counts SetDraining calls; a paced drain runs while it is unchanged
	expect        int           // WithExpectedMembers
	formed        bool          // the expected members were all seen once: settling is over for good
	startedAt     time.Time     // when Start was called
	placement     placement     // cached plan and names digest (placement.go)
	rebalanceKick chan struct{} // membership changed (capacity 1)
	runtime       *Runtime      // SetRuntime; what runtime requests are answered from

	nl         nodeLease            // the node lease every term hangs off (nodelease.go)
	viewsMu    sync.Mutex           // guards views
	views      map[string]*nodeView // other nodes' leases as seen here, for contenders
	takeover   *takeoverLimiter     // bounds takeovers of dead claims
	membersGen atomic.Uint64        // counts members watches: a new one may follow a gap

	// testBeforeRenew, when set, runs before each renewal of the node lease; tests block
	// in it to show that a stuck renew loop still fences.
	testBeforeRenew func(worker string)
}

// New returns an engine for node over store. It does nothing until Start.
func New(store *kv.Store, node string, cfg Config, opts ...Option) (*Engine, error) {
	if err := kv.ValidName("node", node); err != nil {
		return nil, err
	}
	cfg.derive()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{log: slog.Default(), metrics: NopMetrics{}, incarnation: nuid.Next(), info: NodeInfo{Weight: 1}}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	ck, err := newCallKey()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopCtx, stopCancel := context.WithCancel(context.Background())
	renewals := &renewWatch{Metrics: o.metrics, slow: cfg.RenewInterval / 2}
	e := &Engine{
		stopCtx:     stopCtx,
		stopCancel:  stopCancel,
		terms:       map[string]*liveTerm{},
		callKey:     ck,
		claimMeta:   map[string]string{MetaCallKey: ck.public},
		store:       store,
		claims:      store.Workers,
		node:        node,
		incarnation: o.incarnation,
		cfg:         cfg,
		log:         o.log.With("node", node),
		metrics:     renewals,
		renewals:    renewals,
		ctx:         ctx,
		cancel:      cancel,
		workers:     map[string]*worker{},
		synced:      make(chan struct{}),
		closed:      make(chan struct{}),
		info:        o.info,
		expect:      o.expect,
		started0:    cfg.Clock.Now().UTC(),
		members:     map[string]Member{},
		memberStop:  make(chan struct{}),
		memberWrite: make(chan chan error),
		ops:         make(chan struct{}, maxBurstOps),
		releases:    make(chan struct{}, stopWindow),

		membersSynced: make(chan struct{}),
		rebalanceKick: make(chan struct{}, 1),
		views:         map[string]*nodeView{},
		takeover:      &takeoverLimiter{rate: cfg.TakeoverRate, burst: maxBurstOps},
	}
	e.unwatchStop = context.AfterFunc(stopCtx, e.closeTerms)
	e.lease = e.leaseName()
	if !o.noEvents {
		e.events = NewPublisher(store.Conn(), store.Namespace(), node, e.log, o.metrics)
	}
	return e, nil
}

// Node returns the node's name.
func (e *Engine) Node() string { return e.node }

// Incarnation returns the random id of this engine instance; a restarted node has a new one.
func (e *Engine) Incarnation() string { return e.incarnation }

// Config returns the engine's timings, with derived values filled.
func (e *Engine) Config() Config { return e.cfg }

// Register adds a worker that this node is willing to run. Every node of the application
// registers the same names; the cluster runs each one exactly once. It can be called before
// or after Start. It returns kv.ErrInvalidName (wrapped) for a bad name and
// ErrAlreadyRegistered for a name registered twice.
func (e *Engine) Register(name string, fn WorkerFunc, opts ...WorkerOption) error {
	if err := kv.ValidName("worker", name); err != nil {
		return err
	}
	if fn == nil {
		return fmt.Errorf("ownership: register %q: nil WorkerFunc", name)
	}
	var o workerOptions
	for _, opt := range opts {
		opt(&o)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		return ErrClosed
	}
	if _, ok := e.workers[name]; ok {
		return fmt.Errorf("%w: %q", ErrAlreadyRegistered, name)
	}
	w := newWorker(e, name, fn, o)
	e.workers[name] = w
	e.nameChanged(name, true)
	if e.started {
		e.goFunc(w.run)
	}
	return nil
}

// Unregister stops the worker if this node runs it, releases its claim and forgets the name.
// It blocks until the worker stopped (at most about ShutdownGrace) or ctx ends.
func (e *Engine) Unregister(ctx context.Context, name string) error {
	e.mu.Lock()
	w, ok := e.workers[name]
	if ok {
		delete(e.workers, name)
		e.nameChanged(name, false)
	}
	started := e.started
	e.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotRegistered, name)
	}
	w.requestStop()
	if !started {
		return nil
	}
	select {
	case <-w.doneC():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Start begins claiming. It waits until the node has read the current claims or ctx ends;
// the engine then runs until Close. It returns kv.ErrUnavailable (wrapped) when the claims
// could not be read in time; the engine keeps trying in the background until closed.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		return ErrClosed
	}
	if e.started {
		e.mu.Unlock()
		return errors.New("ownership: engine already started")
	}
	e.started = true
	e.startedAt = e.cfg.Clock.Now()
	e.goFunc(e.keepMembership)
	e.goFunc(e.watchMembers)
	e.goFunc(e.rebalance)
	e.goFunc(e.watchClaims)
	e.goFunc(e.refreshClaims)
	for _, w := range e.workers {
		e.goFunc(w.run)
	}
	e.mu.Unlock()
	for _, ch := range []chan struct{}{e.membersSynced, e.synced} {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: reading current members and claims: %w", kv.ErrUnavailable, ctx.Err())
		}
	}
	return nil
}

// Close stops every worker this node runs, releases their claims and stops the engine. The
// workers are stopped in paced batches (see stop.go) so that every claim stays renewed until
// it is released; the pace is chosen to end within ShutdownGrace, and the log says when
// that cannot be done and reports progress every second. Close returns within
// ShutdownGrace + FenceGrace (plus a store call's timeout), also when a worker ignores its
// context: such a worker is left behind — logged, its claim left to expire — and the error
// wraps ErrLeftBehind and names it. Safe to call more than once.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		hard := e.cfg.Clock.AfterFunc(e.cfg.ShutdownGrace+e.cfg.FenceGrace, e.stopCancel)
		defer hard.Stop()
		defer e.stopCancel()
		e.mu.Lock()
		e.closing = true
		e.draining = true // placement leaves us out from now on
		e.drainGen++      // a paced drain ends: the stop takes over
		e.placementChanged()
		started := e.started
		ws := make([]*worker, 0, len(e.workers))
		for _, w := range e.workers {
			ws = append(ws, w)
		}
		e.mu.Unlock()
		if started {
			// Tell the others we are leaving before releasing anything, so that the node
			// each worker goes to claims it the moment it sees the release.
			ctx, cancel := context.WithTimeout(e.stopCtx, e.cfg.RenewInterval)
			if err := e.writeMembership(ctx); err != nil {
				e.log.Debug("could not announce leaving", "err", err)
			}
			cancel()
		}
		if started {
			e.stopWorkers(ws)
		} else {
			for _, w := range ws {
				w.requestStop()
			}
		}
		close(e.memberStop) // leaves the cluster: the membership record is deleted
		if e.events != nil {
			_ = e.events.Flush(2 * time.Second)
		}
		e.cancel()
		e.wg.Wait()
		e.unwatchStop() // no term is held any more
		e.stopNodeLease()
		var left []string
		for _, t := range e.liveTerms() {
			done := e.doneC(t)
			select {
			case <-done:
				continue
			case <-e.stopCtx.Done():
			}
			select {
			case <-done:
				continue
			default:
			}
			e.log.Error("worker did not stop; leaving it behind with its claim to expire (it ignores its context)",
				"worker", t.worker(), "token", t.token(), "running_for", e.cfg.Clock.Now().Sub(t.since).Round(time.Millisecond))
			left = append(left, fmt.Sprintf("%s (token %d)", t.worker(), t.token()))
		}
		if len(left) > 0 {
			e.closeErr = fmt.Errorf("%w: %s did not return within ShutdownGrace + FenceGrace (%v) of Close: make the worker return when its context ends",
				ErrLeftBehind, strings.Join(left, ", "), e.cfg.ShutdownGrace+e.cfg.FenceGrace)
		}
		close(e.closed)
	})
	<-e.closed
	return e.closeErr
}

// Release hands a worker this node owns over to another node: the worker stops, its claim
// is released, and this node leaves the worker to others for a short while (it takes it
// back if no other node does). It returns ErrNotRegistered, or ErrNotOwned when this node
// does not own the worker, and waits until the claim is released or ctx ends.
func (e *Engine) Release(ctx context.Context, name string) error {
	e.mu.Lock()
	w, ok := e.workers[name]
	e.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotRegistered, name)
	}
	if !w.owning() {
		return fmt.Errorf("%w: %q is not owned by node %s", ErrNotOwned, name, e.node)
	}
	w.mu.Lock()
	ended := w.ended
	w.mu.Unlock()
	w.requestHandoff("release")
	// Wait for this term to end: on a single node the worker may be claimed again at once.
	for w.termsEnded() == ended {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// SetDraining turns draining on or off. A draining node hands over every worker it owns and
// claims none until draining is turned off; its membership record says so, so that placement
// leaves it out. The handovers go in paced batches in the background, as in Close; it
// returns once the membership record is written (or ctx ended).
func (e *Engine) SetDraining(ctx context.Context, on bool) {
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		return
	}
	e.draining = on
	e.drainGen++
	gen := e.drainGen
	e.placementChanged()
	started := e.started
	ws := make([]*worker, 0, len(e.workers))
	for _, w := range e.workers {
		ws = append(ws, w)
	}
	e.mu.Unlock()
	// Others must see the drain before the workers come free, or they place them on us.
	if !started {
		return
	}
	if err := e.writeMembership(ctx); err != nil {
		e.log.Warn("could not publish the drain in the membership record; handing over anyway", "err", err)
	}
	if on {
		e.mu.Lock()
		if e.drainGen == gen && !e.closing {
			e.goFunc(func() { e.drain(gen) })
		}
		e.mu.Unlock()
		return
	}
	for _, w := range ws {
		w.poke()
	}
}

// Draining reports whether the node drains.
func (e *Engine) Draining() bool { return e.isDraining() }

// Owner describes who holds a worker's claim.
type Owner struct {
	Worker      string    `json:"worker"`
	Node        string    `json:"node"`
	Incarnation string    `json:"incarnation"`
	Token       uint64    `json:"token"`
	Acquired    time.Time `json:"acquired"`
	Renewed     time.Time `json:"renewed"`
	State       string    `json:"state"`
	Revision    uint64    `json:"revision"`
}

// Lookup returns the current owner of worker, read from the store. It returns ErrNotOwned
// when no live claim exists, ErrUnknownOwner (wrapped) when the stored value is not a
// claim, kv.ErrUnavailable (wrapped) when the store did not answer.
func (e *Engine) Lookup(ctx context.Context, worker string) (Owner, error) {
	return LookupIn(ctx, e.claims, worker)
}

// LookupIn is Lookup against a claims bucket, for callers without an engine.
func LookupIn(ctx context.Context, claims *kv.Bucket, worker string) (Owner, error) {
	ce, err := claims.GetClaim(ctx, worker)
	if errors.Is(err, kv.ErrNotFound) {
		return Owner{}, fmt.Errorf("%w: %q", ErrNotOwned, worker)
	}
	if err != nil {
		return Owner{}, err
	}
	if ce.Err != nil {
		return Owner{Worker: worker, Revision: ce.Revision}, fmt.Errorf("%w: %w", ErrUnknownOwner, ce.Err)
	}
	return ownerOf(ce), nil
}

func ownerOf(ce kv.ClaimEntry) Owner {
	c := ce.Claim
	return Owner{Worker: ce.Worker, Node: c.Node, Incarnation: c.Incarnation, Token: ce.Token(),
		Acquired: c.Acquired, Renewed: c.Renewed, State: c.State, Revision: ce.Revision}
}

// Owned returns the names of the workers this node holds a claim for, sorted.
func (e *Engine) Owned() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for name, w := range e.workers {
		if w.owning() {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Registered returns the names registered on this node, sorted.
func (e *Engine) Registered() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.workers))
	for name := range e.workers {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Synced is closed once the engine has read the current claims after Start.
func (e *Engine) Synced() <-chan struct{} { return e.synced }

// goFunc starts f as a goroutine owned by the engine (hashicorp/raft's goFunc).
func (e *Engine) goFunc(f func()) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
}

// maxBurstOps bounds concurrent claims of one node, so that starting 10,000 workers at once
// queues them here instead of timing them out in the store.
const maxBurstOps = 128

// acquireOp waits for a slot for a bursty store operation; false if ctx ended first.
func (e *Engine) acquireOp(ctx context.Context) bool {
	select {
	case e.ops <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (e *Engine) releaseOp() { <-e.ops }

// settling reports whether the node still waits for the expected members after Start.
func (e *Engine) settling() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	// Once formed, a member that leaves (a SIGTERM right after formation) must not make
	// the others hold its workers back again (issue 14).
	return e.expect > 1 && !e.formed && len(e.members) < e.expect && e.cfg.Clock.Now().Sub(e.startedAt) < e.cfg.TTL
}

func (e *Engine) isDraining() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.draining
}

// membersChanged is called when a node joined, left or changed its record: waiting
// contenders recompute their placement, owners rebalance after a quiet period.
func (e *Engine) membersChanged() {
	e.kickRebalance()
	e.mu.Lock()
	ws := make([]*worker, 0, len(e.workers))
	for _, w := range e.workers {
		ws = append(ws, w)
	}
	e.mu.Unlock()
	for _, w := range ws {
		w.poke()
	}
}

func (e *Engine) publish(ev Event) {
	if e.events != nil {
		e.events.Publish(ev)
	}
}

// watchClaims follows the workers bucket and hands each change to the worker it concerns.
// The watch is restarted when it ends, for instance after the connection was lost.
func (e *Engine) watchClaims() {
	retry := 100 * time.Millisecond
	synced := false
	for e.ctx.Err() == nil {
		// The watch's first delivery holds every claim kept: a registered worker that gets
		// none has no entry, and needs no read of its own.
		e.mu.Lock()
		covered := make([]*worker, 0, len(e.workers))
		for _, w := range e.workers {
			covered = append(covered, w)
		}
		e.mu.Unlock()
		w, err := e.claims.Watch(e.ctx)
		if errors.Is(err, kv.ErrBucketNotFound) {
			err = e.recreateClaims()
			if err == nil {
				continue
			}
		}
		if err != nil {
			e.log.Warn("cannot watch claims; retrying", "err", err, "in", retry)
			select {
			case <-e.ctx.Done():
				return
			case <-time.After(retry):
			}
			retry = min(retry*2, 5*time.Second)
			continue
		}
		retry = 100 * time.Millisecond
		syncedCh := w.Synced()
		// A watch does not end when its bucket is deleted: it waits for it. Look for the
		// bucket now and then, and recreate it if it is gone.
		check := e.cfg.Clock.NewTimer(e.cfg.RenewInterval)
	loop:
		for {
			select {
			case <-check.C():
				if e.ensureClaims() {
					break loop
				}
				check.Reset(e.cfg.RenewInterval)
			case <-e.ctx.Done():
				break loop
			case <-syncedCh:
				syncedCh = nil
				// Synced closes after the last initial entry was queued: take those first,
				// or a claim (or marker) still queued would be taken for "never written".
			drain:
				for {
					select {
					case c, ok := <-w.Changes():
						if !ok {
							break drain
						}
						e.dispatch(c)
					default:
						break drain
					}
				}
				for _, cw := range covered {
					cw.observe(observation{known: true, never: true, unseen: true})
				}
				e.watching.Store(true)
				if !synced {
					synced = true
					close(e.synced)
				}
			case c, ok := <-w.Changes():
				if !ok {
					break loop
				}
				e.dispatch(c)
			}
		}
		check.Stop()
		w.Stop()
		e.watching.Store(false)
		if e.ctx.Err() == nil {
			e.log.Debug("claims watch ended; watching again")
			// The bucket may have been recreated, its revisions starting over (above the
			// highest we saw, unless another node recreated it knowing less): accept the
			// next revision of every claim whatever its number, keeping the takeover timers.
			e.rebaseObservations()
		}
	}
}

func (e *Engine) dispatch(c kv.Change) {
	e.noteRevision(c.Revision)
	e.mu.Lock()
	w := e.workers[c.Key]
	e.mu.Unlock()
	if w == nil {
		return
	}
	o := observationOf(c)
	if o.present {
		if o.malformed != nil {
			e.log.Warn("claim is not a valid record; treating the worker as owned by an unknown node",
				"worker", c.Key, "revision", c.Revision, "err", o.malformed)
		}
	}
	w.observe(o)
}

// noteRevision records a claims revision seen, for the token floor of a recreated bucket.
func (e *Engine) noteRevision(rev uint64) {
	for {
		cur := e.maxRev.Load()
		if rev <= cur || e.maxRev.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// ensureClaims recreates the workers bucket if it is gone; it reports whether it did (the
// watch must start again).
func (e *Engine) ensureClaims() bool {
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RenewInterval)
	defer cancel()
	first, created, err := e.store.EnsureWorkers(ctx, e.maxRev.Load())
	if err != nil {
		return false
	}
	if first == 0 {
		prev := e.claimsCreated
		e.claimsCreated = created
		if prev.IsZero() || prev.Equal(created) {
			return false
		}
		// Deleted and created again by someone else: its revisions may have started
		// over, and our claims went with it. Watch it anew and take its revisions
		// whatever their number.
		e.log.Warn("the workers bucket was recreated by someone else; watching it anew", "created", created)
		e.claimsGone()
		return true
	}
	e.watching.Store(false)
	e.claimsGone()
	e.claimsCreated = time.Time{} // ours: the next check records its creation time
	e.log.Warn("the workers bucket was missing; recreated it with tokens above every one seen", "first_token", first)
	if err := e.store.EnsureEvents(ctx); err != nil {
		e.log.Warn("could not recreate the events stream", "err", err)
	}
	return true
}

// recreateClaims recreates a missing workers bucket (and events stream) with revisions
// above every token this node has seen. Owners lost their claims with the bucket: their
// renewals fail and they fence; contenders keep their takeover timers.
func (e *Engine) recreateClaims() error {
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RenewInterval)
	defer cancel()
	first, _, err := e.store.EnsureWorkers(ctx, e.maxRev.Load())
	if err != nil {
		return err
	}
	if first > 0 {
		e.claimsGone()
		e.claimsCreated = time.Time{}
		e.log.Warn("the workers bucket was missing; recreated it with tokens above every one seen", "first_token", first)
	}
	if err := e.store.EnsureEvents(ctx); err != nil {
		e.log.Warn("could not recreate the events stream", "err", err)
	}
	e.rebaseObservations()
	return nil
}

// rebaseObservations lets every worker take the next revision it sees, whatever its number.
func (e *Engine) rebaseObservations() {
	e.mu.Lock()
	ws := make([]*worker, 0, len(e.workers))
	for _, w := range e.workers {
		ws = append(ws, w)
	}
	e.mu.Unlock()
	for _, w := range ws {
		w.mu.Lock()
		w.obs.rev = 0
		w.mu.Unlock()
		w.poke()
	}
}
