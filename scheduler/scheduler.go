package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/jetcoord/coordinator/kv"
	"github.com/jetcoord/coordinator/lease"
	"github.com/jetcoord/coordinator/ownership"
)

// Tick is one run of a job, as the job function sees it.
type Tick struct {
	Job string
	// Time is the scheduled time of the tick, in the schedule's zone; for a manual run, the
	// second it was triggered. A late or catch-up run gets the time it was scheduled for.
	Time time.Time
	// Node is the node that runs it.
	Node string
	// Token is the revision of the tick's claim in the jobs bucket: unique per attempt, and
	// larger for a retry than for the attempt it repeats. Pass it on as a fencing token.
	Token  uint64
	Manual bool
	// Attempt is 1, or higher when WithRetryLost runs a lost tick again.
	Attempt int

	lease      *runLease
	fenceGrace time.Duration
}

// FenceGrace is how long the run may take to stop once its deadline passed before it must
// be killed: the FenceGrace of the scheduler's timing (WithTiming), which keeps
// RenewDeadline + FenceGrace below the run lease's TTL. Hand it to the watchdog of a
// supervised command together with Deadline.
func (t Tick) FenceGrace() time.Duration { return t.fenceGrace }

// Deadline returns the run's renew deadline — its context ends then unless the run's lease
// is renewed first — and a channel closed when the deadline next moves. A zero time when the
// tick is not running.
func (t Tick) Deadline() (time.Time, <-chan struct{}) {
	if t.lease == nil {
		return time.Time{}, nil
	}
	return t.lease.Deadline()
}

// PlacementFunc adapts a function to Placement, e.g.
// PlacementFunc(func(job string) bool { return engine.Preferred(job) == node }).
type PlacementFunc func(job string) bool

// Preferred calls f.
func (f PlacementFunc) Preferred(job string) bool { return f(job) }

// Scheduler runs cron jobs so that each tick runs once in the cluster. Every node creates
// one over the same store and adds the same jobs; see the package doc for the protocol.
type Scheduler struct {
	store     *kv.Store
	bucket    *kv.Bucket
	node      string
	opts      options
	timing    lease.Timing // of run leases and the catch-up lock, derived
	log       *slog.Logger
	events    *ownership.Publisher
	retention time.Duration // of the jobs bucket, read at Start

	wg sync.WaitGroup // every goroutine of every job

	mu      sync.Mutex
	jobs    map[string]*job
	started bool
	closing bool

	closeOnce sync.Once
	closed    chan struct{}
}

// New returns a scheduler for node over store. It does nothing until Start. It returns
// kv.ErrInvalidName (wrapped) for a bad node name and ErrInvalidOption (wrapped) for a bad
// option.
func New(store *kv.Store, node string, opts ...Option) (*Scheduler, error) {
	if err := kv.ValidName("node", node); err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	if store == nil {
		return nil, invalid(ErrInvalidOption, "nil store")
	}
	o := options{
		log:           slog.Default(),
		clock:         lease.RealClock{},
		placement:     everyNode{},
		takeoverDelay: DefaultTakeoverDelay,
		missAfter:     DefaultMissAfter,
		timing:        lease.Timing{TTL: DefaultRunLease},
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.takeoverDelay >= o.missAfter {
		return nil, invalid(ErrInvalidOption, "takeover delay %v must be shorter than miss-after %v, or a tick whose preferred node is down is missed before anyone takes it over", o.takeoverDelay, o.missAfter)
	}
	s := &Scheduler{
		store:     store,
		bucket:    store.Jobs,
		node:      node,
		opts:      o,
		timing:    o.timing.Derive(),
		log:       o.log.With("node", node),
		retention: 7 * 24 * time.Hour,
		jobs:      map[string]*job{},
		closed:    make(chan struct{}),
	}
	switch {
	case o.noEvents:
	case o.events != nil:
		s.events = o.events
	default:
		s.events = ownership.NewPublisher(store.Conn(), store.Namespace(), node, s.log, nil)
	}
	return s, nil
}

// Node returns the node's name.
func (s *Scheduler) Node() string { return s.node }

// Add registers a job: fn runs at every tick of spec, once in the cluster. Every node adds
// the same jobs with the same spec and options. Add can be called before or after Start. It
// returns an error naming the job and the reason for a bad name (wrapping
// kv.ErrInvalidName), schedule (ErrInvalidSchedule), time zone (ErrInvalidTimeZone),
// policy (ErrInvalidPolicy) or option (ErrInvalidOption); ErrJobExists for a name added
// before; ErrClosed after Close. A rejected job does not affect the others.
func (s *Scheduler) Add(name, spec string, fn func(ctx context.Context, tick Tick) error, opts ...JobOption) error {
	if err := kv.ValidName("job", name); err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	if fn == nil {
		return invalid(ErrInvalidOption, "nil job function").forJob(name)
	}
	o := jobOptions{loc: time.UTC, overlap: Skip, catchUp: None}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return err.forJob(name)
		}
	}
	sched, err := ParseSchedule(spec, o.loc)
	if err != nil {
		var ie *inputError
		if errors.As(err, &ie) {
			return ie.forJob(name)
		}
		return err
	}
	if sched.Next(s.opts.clock.Now()).IsZero() {
		return invalid(ErrInvalidSchedule, "invalid schedule %q: it has no tick in the next five years", spec).forJob(name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return ErrClosed
	}
	if _, ok := s.jobs[name]; ok {
		return fmt.Errorf("%w: %q", ErrJobExists, name)
	}
	j := newJob(s, name, sched, fn, o)
	s.jobs[name] = j
	if s.started {
		j.start()
	}
	return nil
}

// Remove stops the job on this node: no more ticks are claimed here, and runs of it on
// this node are cancelled (cause ErrRemoved; their records say lost, so that with
// WithRetryLost a node that still has the job runs them again). It waits until they ended
// or ctx ends. Other nodes keep the job until they remove it too. It returns ErrUnknownJob
// for a name this scheduler does not have.
func (s *Scheduler) Remove(ctx context.Context, name string) error {
	s.mu.Lock()
	j, ok := s.jobs[name]
	if ok {
		delete(s.jobs, name)
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownJob, name)
	}
	j.stop(ErrRemoved)
	select {
	case <-j.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Start begins scheduling. It waits until every job has read the run leases in the store,
// or ctx ends; the scheduler then runs until Close. It returns kv.ErrUnavailable (wrapped)
// when the store did not answer in time; the scheduler keeps trying in the background.
func (s *Scheduler) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.started {
		s.mu.Unlock()
		return errors.New("scheduler: already started")
	}
	s.mu.Unlock()
	s.readRetention(ctx)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrClosed
	}
	s.started = true
	jobs := make([]*job, 0, len(s.jobs))
	for _, j := range s.jobs {
		jobs = append(jobs, j)
		j.start()
	}
	s.mu.Unlock()
	for _, j := range jobs {
		select {
		case <-j.synced:
		case <-j.done:
		case <-ctx.Done():
			return fmt.Errorf("%w: reading run leases of job %q: %w", kv.ErrUnavailable, j.name, ctx.Err())
		}
	}
	return nil
}

// readRetention reads how long the jobs bucket keeps entries (kv.Options.JobRetention);
// .last is refreshed well within it. It keeps the default of 7 days when the stream does
// not answer.
func (s *Scheduler) readRetention(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.timing.RenewInterval)
	defer cancel()
	st, err := s.store.JetStream().Stream(ctx, "KV_"+s.bucket.Name())
	if err != nil {
		s.log.Debug("cannot read the jobs bucket's retention; assuming 7 days", "err", err)
		return
	}
	if age := st.CachedInfo().Config.MaxAge; age > 0 {
		s.retention = age
	}
}

// Close stops scheduling, cancels the runs of this node (cause ErrClosed; they are
// recorded lost, see WithRetryLost) and waits until they ended and their records are
// written. Safe to call more than once.
func (s *Scheduler) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		jobs := make([]*job, 0, len(s.jobs))
		for _, j := range s.jobs {
			jobs = append(jobs, j)
		}
		s.mu.Unlock()
		for _, j := range jobs {
			j.stop(ErrClosed)
		}
		s.wg.Wait()
		if s.events != nil {
			_ = s.events.Flush(2 * time.Second)
		}
		close(s.closed)
	})
	<-s.closed
	return nil
}

// JobStatus describes a job as this node sees it.
type JobStatus struct {
	Name     string
	Spec     string
	TimeZone string
	Overlap  Overlap
	CatchUp  CatchUp
	// Next is the next tick after now.
	Next time.Time
	// Last is the record of the latest tick (<job>.last): its state, node, start, end and
	// error. Nil when none is stored (never ran, or older than the bucket's retention).
	Last *Run
	// Running lists the ticks whose run lease is live, on any node.
	Running []ActiveRun
}

// ActiveRun is a run whose lease is live.
type ActiveRun struct {
	Tick    time.Time
	Manual  bool
	Node    string
	Attempt int
}

// Jobs returns the jobs of this scheduler, sorted by name, with their last run read from
// the store. It returns kv.ErrUnavailable (wrapped) when the store did not answer.
func (s *Scheduler) Jobs(ctx context.Context) ([]JobStatus, error) {
	s.mu.Lock()
	jobs := make([]*job, 0, len(s.jobs))
	for _, j := range s.jobs {
		jobs = append(jobs, j)
	}
	s.mu.Unlock()
	sort.Slice(jobs, func(a, b int) bool { return jobs[a].name < jobs[b].name })
	now := s.opts.clock.Now()
	out := make([]JobStatus, 0, len(jobs))
	for _, j := range jobs {
		st := JobStatus{Name: j.name, Spec: j.sched.Spec(), TimeZone: j.sched.Location().String(),
			Overlap: j.opts.overlap, CatchUp: j.opts.catchUp, Next: j.sched.Next(now)}
		e, err := s.bucket.Get(ctx, lastKey(j.name))
		switch {
		case err == nil:
			if r, derr := decodeRun(e.Key, e.Value); derr == nil {
				st.Last = &r
			} else {
				j.log.Warn("last run record is malformed", "err", derr)
			}
		case !errors.Is(err, kv.ErrNotFound):
			return nil, err
		}
		st.Running = j.activeRuns()
		out = append(out, st)
	}
	return out, nil
}

// Trigger runs the job now, on this node, as a manual tick with its own claim key
// (<job>.<unix>-manual), so that it runs once across the cluster however often the
// claim is retried. It returns when the run has started (or was recorded skipped: then
// with ErrSkipped). The overlap policy applies. It returns ErrUnknownJob, ErrNotStarted,
// ErrClosed, kv.ErrUnavailable (wrapped) when the store did not answer.
func (s *Scheduler) Trigger(ctx context.Context, name string) (Tick, error) {
	s.mu.Lock()
	j, ok := s.jobs[name]
	started := s.started
	s.mu.Unlock()
	switch {
	case !ok:
		return Tick{}, fmt.Errorf("%w: %q", ErrUnknownJob, name)
	case !started:
		return Tick{}, ErrNotStarted
	}
	if !j.enter() {
		return Tick{}, ErrClosed
	}
	defer j.exit()
	now := s.opts.clock.Now().Truncate(time.Second)
	for i := 0; i < 10; i++ {
		t := now.Add(time.Duration(i) * time.Second)
		out, tick, _, err := j.claim(ctx, tickReq{t: t, manual: true, reason: "manual", attempt: 1})
		if err != nil {
			return Tick{}, err
		}
		switch out {
		case outStarted:
			return tick, nil
		case outSkipped:
			return tick, ErrSkipped
		}
		// Another manual run took this second: use the next one.
	}
	return Tick{}, fmt.Errorf("%w: job %q: ten manual ticks in a row were taken", ErrBusy, name)
}
