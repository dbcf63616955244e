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
	confirmed bool      // seen since the current watch began
	seenAt    time.Time // local (monotonic) time this revision was seen
}

// goneLease is a tick whose run lease went away without its holder releasing it: the
// sweeper checks it, and Skip and Replace count it as possibly running, only once this
// node's own clock says a lease TTL has passed since the last revision it saw (notBefore).
// An expiry marker, a delete or a purge by anyone else starts or keeps that timer; it
// never skips it: the stream leader's clock may run ahead, an operator may delete a live
// lease.
type goneLease struct {
	key       string
	notBefore time.Time
	running   bool // last seen running, or never seen: Skip and Replace count it until notBefore
}

// job is one added job on this node: its tick loop, its watcher of run leases, the sweeper
// that checks leases that went away, the catch-up loop, and the runs it started.
type job struct {
	s     *Scheduler
	name  string
	sched Schedule
	fn    func(context.Context, Tick) error
	opts  jobOptions
	// period is the shortest gap between ticks, for the run history (historyTTL).
	period time.Duration
	log    *slog.Logger

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
	gone     []goneLease          // ticks whose lease went away: to check for a lost run, in order of notBefore

	garbageSeen map[string]bool // keys holding garbage, logged once

	// lastWritten is what this node last wrote to <job>.last and at which revision
	// (lastWrittenRev, 0 if nothing): the next copy is written at that revision without
	// reading the key first, unless another node wrote it since.
	lastWritten    Run
	lastWrittenRev uint64

	catchUpFrom time.Time // the earliest tick a requested catch-up pass starts after
	lastHandled time.Time // the latest tick the tick loop claimed or found claimed
}

func newJob(s *Scheduler, name string, sched Schedule, fn func(context.Context, Tick) error, o jobOptions) *job {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &job{s: s, name: name, sched: sched, fn: fn, opts: o, period: period(sched, s.opts.clock.Now()), log: s.log.With("job", name),
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
		e, err := j.readDecisive(ctx, lastKey(j.name))
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
			// to show that its lease is gone. This node saw no revision of it: it times a
			// lease TTL from now.
			j.mu.Lock()
			j.addGoneLocked(tickKey(j.name, last.Tick, last.Manual), j.clock().Add(j.leaseTTL(leaseRecord{})), last.State == StateRunning)
			j.mu.Unlock()
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
// t. While another node holds the tick's lease but no record is there (that node may have
// died between creating the lease and the record), it keeps trying for up to a lease TTL more,
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
			j.leaseWentLocked(k, v, true)
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
		v := leaseView{rev: c.Revision, confirmed: true, seenAt: j.clock()}
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
		j.leaseWentLocked(key, prev, had)
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

// leaseTTL is how long after its last revision a lease may still be renewed by its
// holder: the longer of the TTL it carries and this node's.
func (j *job) leaseTTL(rec leaseRecord) time.Duration {
	return max(time.Duration(rec.TTL), j.s.timing.TTL)
}

// leaseWentLocked records that the lease of tick key went away (a delete, purge or expiry
// marker, or missing after a watch gap); prev is what this node saw of it last, if had. A
// lease its holder released ("done", "lost") means its run ended: nothing to wait for. Any
// other is timed on this node's clock from the last revision seen. j.mu must be held.
func (j *job) leaseWentLocked(key string, prev leaseView, had bool) {
	now := j.clock()
	switch {
	case had && !prev.malformed && prev.rec.State == leaseDone:
		return
	case had && !prev.malformed && prev.rec.State == leaseLost:
		j.addGoneLocked(key, now, false) // recorded lost by its own node: retry at once
	case had:
		j.addGoneLocked(key, prev.seenAt.Add(j.leaseTTL(prev.rec)), !prev.malformed && prev.rec.State == leaseRunning)
	default:
		j.addGoneLocked(key, now.Add(j.leaseTTL(leaseRecord{})), true)
	}
}

// addGoneLocked queues tick key for the sweeper at notBefore. j.mu must be held.
func (j *job) addGoneLocked(key string, notBefore time.Time, running bool) {
	for i, g := range j.gone {
		if g.key == key {
			if notBefore.After(g.notBefore) {
				j.gone[i].notBefore = notBefore
			}
			j.gone[i].running = g.running || running
			j.sortGoneLocked()
			kick(j.goneKick)
			return
		}
	}
	j.gone = append(j.gone, goneLease{key: key, notBefore: notBefore, running: running})
	j.sortGoneLocked()
	kick(j.goneKick)
}

func (j *job) sortGoneLocked() {
	sort.SliceStable(j.gone, func(a, b int) bool { return j.gone[a].notBefore.Before(j.gone[b].notBefore) })
}

// fadingLocked names a tick other than key whose lease went away without a release less
// than a lease TTL ago by this node's clock: its run may still be going. j.mu must be held.
func (j *job) fadingLocked(key string, now time.Time) (string, time.Time) {
	for _, g := range j.gone {
		if g.key != key && g.running && now.Before(g.notBefore) {
			if _, live := j.leases[g.key]; !live {
				return g.key, g.notBefore
			}
		}
	}
	return "", time.Time{}
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
	if k, _ := j.fadingLocked(key, j.clock()); k != "" {
		return k + " (its lease went away less than a lease TTL ago)"
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

// sweep checks, one after the other and each once its time has come, the ticks whose lease
// went away: a run that was still claimed or running is lost.
func (j *job) sweep() {
	for {
		j.mu.Lock()
		var g goneLease
		if len(j.gone) > 0 {
			g = j.gone[0]
		}
		j.mu.Unlock()
		if g.key == "" {
			select {
			case <-j.ctx.Done():
				return
			case <-j.goneKick:
				continue
			}
		}
		if wait := g.notBefore.Sub(j.clock()); wait > 0 {
			t := j.s.opts.clock.NewTimer(wait)
			select {
			case <-j.ctx.Done():
				t.Stop()
				return
			case <-j.goneKick: // an earlier one may have come in
			case <-t.C():
			}
			t.Stop()
			continue
		}
		j.mu.Lock()
		if len(j.gone) > 0 && j.gone[0].key == g.key {
			j.gone = j.gone[1:]
		}
		j.notifyLocked() // Skip and Replace no longer count it
		j.mu.Unlock()
		for backoff := 100 * time.Millisecond; ; backoff = min(backoff*2, 5*time.Second) {
			err := j.checkGone(g.key)
			if err == nil || j.ctx.Err() != nil {
				break
			}
			j.log.Debug("cannot check a run whose lease went away; retrying", "tick", g.key, "err", err)
			if !j.sleep(j.ctx, backoff) {
				return
			}
		}
	}
}
