package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jetcoord/coordinator/kv"
)

// leaseView is a run lease as this node's watcher last saw it.
type leaseView struct {
	rev       uint64
	rec       leaseRecord
	malformed bool
	confirmed bool // seen since the current watch began
}

// job is one added job on this node: its tick loop, its watcher of run leases, the sweeper
// that checks leases that went away, the catch-up loop, and the runs it started.
type job struct {
	s     *Scheduler
	name  string
	sched Schedule
	fn    func(context.Context, Tick) error
	opts  jobOptions
	log   *slog.Logger

	ctx    context.Context
	cancel context.CancelCauseFunc
	synced chan struct{} // closed once the watcher has read the current leases
	done   chan struct{} // closed when stopped and every goroutine of the job has returned

	catchUpKick chan struct{} // capacity 1
	goneKick    chan struct{} // capacity 1

	mu       sync.Mutex
	stopped  bool
	inFlight int                  // goroutines and calls in flight
	leases   map[string]leaseView // by tick key: live leases seen by the watcher
	runs     map[string]*run      // this node's runs, by tick key
	changed  chan struct{}        // closed and replaced whenever leases or runs change
	gone     []string             // tick keys whose lease went away: to check for a lost run

	catchUpFrom time.Time // the earliest tick a requested catch-up pass starts after
	lastHandled time.Time // the latest tick the tick loop claimed or found claimed
}

func newJob(s *Scheduler, name string, sched Schedule, fn func(context.Context, Tick) error, o jobOptions) *job {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &job{s: s, name: name, sched: sched, fn: fn, opts: o, log: s.log.With("job", name),
		ctx: ctx, cancel: cancel, synced: make(chan struct{}), done: make(chan struct{}),
		catchUpKick: make(chan struct{}, 1), goneKick: make(chan struct{}, 1),
		leases: map[string]leaseView{}, runs: map[string]*run{}, changed: make(chan struct{})}
}

// enter counts a goroutine or call of the job; it fails once the job is stopping.
func (j *job) enter() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.stopped {
		return false
	}
	j.inFlight++
	j.s.wg.Add(1)
	return true
}

func (j *job) exit() {
	j.mu.Lock()
	j.inFlight--
	if j.inFlight == 0 && j.stopped {
		close(j.done)
	}
	j.mu.Unlock()
	j.s.wg.Done()
}

// goFunc runs f as a goroutine owned by the job (hashicorp/raft's goFunc); false once the
// job is stopping.
func (j *job) goFunc(f func()) bool {
	if !j.enter() {
		return false
	}
	go func() {
		defer j.exit()
		f()
	}()
	return true
}

// stop cancels the job's context with cause; done closes when everything has returned.
func (j *job) stop(cause error) {
	j.mu.Lock()
	if j.stopped {
		j.mu.Unlock()
		return
	}
	j.stopped = true
	if j.inFlight == 0 {
		close(j.done)
	}
	j.mu.Unlock()
	j.cancel(cause)
}

func (j *job) start() {
	j.goFunc(j.main)
}

func (j *job) clock() time.Time { return j.s.opts.clock.Now() }

// opCtx bounds one store operation.
func (j *job) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, j.s.timing.RenewInterval)
}

// sleep waits d or until ctx ends; false when ctx ended.
func (j *job) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := j.s.opts.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

func (j *job) sleepUntil(t time.Time) bool { return j.sleep(j.ctx, t.Sub(j.clock())) }

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// notifyLocked wakes whoever waits for a change of leases or runs. j.mu must be held.
func (j *job) notifyLocked() {
	close(j.changed)
	j.changed = make(chan struct{})
}

func (j *job) main() {
	j.goFunc(j.watch)
	j.goFunc(j.sweep)
	select {
	case <-j.synced:
	case <-j.ctx.Done():
		return
	}
	// A job that ran before (on any node) may run ticks up to missAfter late, and the ticks
	// between its last record and that window are missed; a new job starts with the next
	// tick. The anchor is read before this node's tick loop writes anything.
	var last *Run
	for backoff := 100 * time.Millisecond; ; backoff = min(backoff*2, 5*time.Second) {
		ctx, cancel := j.opCtx(j.ctx)
		e, err := j.s.bucket.Get(ctx, lastKey(j.name))
		cancel()
		if err == nil {
			r, derr := decodeRun(e.Key, e.Value)
			if derr != nil {
				j.log.Warn("last run record is malformed; no catch-up", "err", derr)
			} else {
				last = &r
			}
			break
		}
		if errors.Is(err, kv.ErrNotFound) {
			break
		}
		j.log.Debug("cannot read the last run; retrying", "err", err)
		if !j.sleep(j.ctx, backoff) {
			return
		}
	}
	now := j.clock()
	cursor := now
	if last != nil {
		cursor = now.Add(-j.s.opts.missAfter)
		j.requestCatchUp(last.Tick)
		if !finalState(last.State) {
			// After an outage longer than the bucket's marker TTL no expiry marker is left
			// to show that its lease is gone: check it now.
			j.mu.Lock()
			j.gone = append(j.gone, tickKey(j.name, last.Tick, last.Manual))
			j.mu.Unlock()
			kick(j.goneKick)
		}
	}
	j.goFunc(j.catchUpLoop)
	j.tickLoop(cursor)
}

// requestCatchUp asks for a catch-up pass over the ticks after from.
func (j *job) requestCatchUp(from time.Time) {
	j.mu.Lock()
	if j.catchUpFrom.IsZero() || from.Before(j.catchUpFrom) {
		j.catchUpFrom = from
	}
	j.mu.Unlock()
	kick(j.catchUpKick)
}

// tickLoop claims every tick after cursor: at the tick when this node is preferred, a
// takeover delay later otherwise.
func (j *job) tickLoop(cursor time.Time) {
	for {
		t := j.sched.Next(cursor)
		if t.IsZero() {
			j.log.Info("the schedule has no more ticks")
			return
		}
		cursor = t
		if !j.sleepUntil(t) {
			return
		}
		if !j.s.opts.placement.Preferred(j.name) && !j.sleepUntil(t.Add(j.s.opts.takeoverDelay)) {
			return
		}
		j.attempt(t)
	}
}

// attempt claims tick t, retrying while the store does not answer, until missAfter past
// t. While another node's lease on the tick is only "claiming" (that node may have died
// between creating the lease and the record), it keeps trying for up to a lease TTL more,
// until that lease has run out.
func (j *job) attempt(t time.Time) {
	deadline := t.Add(j.s.opts.missAfter)
	limit := deadline.Add(j.s.timing.TTL)
	reason := "scheduled"
	if j.clock().Sub(t) > j.s.opts.takeoverDelay+time.Second {
		reason = "late"
	}
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(j.ctx, deadline.Sub(j.clock()))
		out, _, _, err := j.claim(ctx, tickReq{t: t, reason: reason, attempt: 1})
		cancel()
		if j.ctx.Err() != nil {
			return
		}
		if err == nil && out != outBusy {
			j.mu.Lock()
			j.lastHandled = t
			j.mu.Unlock()
			return
		}
		now := j.clock()
		if err != nil {
			j.log.Debug("cannot claim tick; retrying", "tick", t, "err", err)
		} else if ext := now.Add(j.s.timing.TTL); ext.After(deadline) {
			deadline = ext
			if deadline.After(limit) {
				deadline = limit
			}
		}
		if !now.Before(deadline) {
			if err != nil {
				// The pass retries until the store answers; it covers this tick and, through
				// later requests, the ones given up after it.
				j.log.Warn("tick not claimed in time: the store did not answer; catch-up decides once it does",
					"tick", t, "err", err)
				j.mu.Lock()
				from := j.lastHandled
				j.mu.Unlock()
				if from.IsZero() {
					from = t.Add(-time.Nanosecond)
				}
				j.requestCatchUp(from)
			}
			return
		}
		j.sleep(j.ctx, min(backoff, deadline.Sub(now)))
		backoff = min(backoff*2, time.Second)
	}
}

// watch follows the job's run leases; it restarts the watch when it ends (a lost
// connection, say) and asks for a catch-up pass after such a gap.
func (j *job) watch() {
	retry := 100 * time.Millisecond
	first := true
	for j.ctx.Err() == nil {
		w, err := j.s.bucket.Watch(j.ctx, leaseFilter(j.name))
		if err != nil {
			j.log.Debug("cannot watch run leases; retrying", "err", err, "in", retry)
			j.sleep(j.ctx, retry)
			retry = min(retry*2, 5*time.Second)
			continue
		}
		retry = 100 * time.Millisecond
		j.mu.Lock()
		for k, v := range j.leases {
			v.confirmed = false
			j.leases[k] = v
		}
		j.mu.Unlock()
		syncedCh := w.Synced()
	loop:
		for {
			select {
			case <-j.ctx.Done():
				break loop
			case <-syncedCh:
				syncedCh = nil
				j.resynced(first)
				first = false
			case c, ok := <-w.Changes():
				if !ok {
					break loop
				}
				j.apply(c)
			}
		}
		w.Stop()
	}
}

// resynced runs when a watch has delivered the current leases: leases that vanished while
// the watch was down are checked, and a gap asks for a catch-up pass.
func (j *job) resynced(first bool) {
	if first {
		close(j.synced)
		return
	}
	j.mu.Lock()
	for k, v := range j.leases {
		if !v.confirmed {
			delete(j.leases, k)
			j.gone = append(j.gone, k)
		}
	}
	j.notifyLocked()
	from := j.lastHandled
	j.mu.Unlock()
	kick(j.goneKick)
	if !from.IsZero() {
		j.requestCatchUp(from)
	}
}

// apply records a change of a run lease and tells the local run it concerns.
func (j *job) apply(c kv.Change) {
	key, ok := parseLeaseKey(j.name, c.Key)
	if !ok {
		return
	}
	var stopReason string
	var lost *run
	j.mu.Lock()
	prev, had := j.leases[key]
	r := j.runs[key]
	if c.Op == kv.OpPut {
		v := leaseView{rev: c.Revision, confirmed: true}
		rec, err := decodeLease(c.Key, c.Value)
		if err != nil {
			j.log.Warn("run lease is not a valid record; treating it as a run by an unknown node", "key", c.Key, "err", err)
			v.malformed = true
		}
		v.rec = rec
		j.leases[key] = v
		if r != nil && !v.malformed {
			switch {
			case rec.Claim != r.claim:
				lost = r
			case rec.Stop != "":
				stopReason = rec.Stop
			}
		}
	} else {
		delete(j.leases, key)
		if !had || prev.malformed || prev.rec.State != leaseDone {
			j.gone = append(j.gone, key)
			kick(j.goneKick)
		}
		lost = r
	}
	j.notifyLocked()
	j.mu.Unlock()
	switch {
	case lost != nil && lost.lease != nil:
		lost.lease.lose() // its context ends through the lease, with the deadline pulled in
	case lost != nil:
		lost.cancel(ErrLeaseLost)
	case stopReason != "":
		r.replaced(stopReason)
	}
}

// runningOther names a run of the job other than tick key that is going on any node, or
// returns "".
func (j *job) runningOther(key string) string {
	j.mu.Lock()
	defer j.mu.Unlock()
	for k := range j.runs {
		if k != key {
			return k + " on " + j.s.node
		}
	}
	for k, v := range j.leases {
		// A malformed value (written by hand) is no run of ours: it does not block the job.
		if k != key && !v.malformed && v.rec.State == leaseRunning {
			return k + " on " + v.rec.Node
		}
	}
	return ""
}

// active lists the live run leases of the job.
func (j *job) activeRuns() []ActiveRun {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []ActiveRun
	for k, v := range j.leases {
		if v.malformed || v.rec.State != leaseRunning {
			continue
		}
		out = append(out, ActiveRun{Tick: v.rec.Tick, Manual: strings.HasSuffix(k, manualSuffix), Node: v.rec.Node, Attempt: v.rec.Attempt})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Tick.Before(out[b].Tick) })
	return out
}

// sweep checks, one after the other, the ticks whose lease went away: a run that was
// still claimed or running is lost.
func (j *job) sweep() {
	for {
		j.mu.Lock()
		var key string
		if len(j.gone) > 0 {
			key = j.gone[0]
			j.gone = j.gone[1:]
		}
		j.mu.Unlock()
		if key == "" {
			select {
			case <-j.ctx.Done():
				return
			case <-j.goneKick:
				continue
			}
		}
		for backoff := 100 * time.Millisecond; ; backoff = min(backoff*2, 5*time.Second) {
			err := j.checkGone(key)
			if err == nil || j.ctx.Err() != nil {
				break
			}
			j.log.Debug("cannot check a run whose lease went away; retrying", "tick", key, "err", err)
			if !j.sleep(j.ctx, backoff) {
				return
			}
		}
	}
}
