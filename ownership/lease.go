package ownership

import (
	"context"
	"sync"
	"time"
)

// Lease is one ownership term of a worker on this node. The worker's context ends when the
// term ends; the lease tells the worker its fencing token and how long it may go on.
type Lease struct {
	worker string
	node   string
	token  uint64

	e   *Engine
	ctx context.Context // the term's context

	mu       sync.Mutex
	deadline time.Time
	fenced   bool          // the term was lost: the deadline was pulled in and never moves again
	changed  chan struct{} // made by the first Deadline call after a change: most never ask
	cp       *checkpoint   // made by the first State or SaveState call: most never ask
}

// checkpoint is the last checkpoint as a term knows it: loaded on the first State call,
// replaced by the term's own SaveState.
type checkpoint struct {
	once sync.Once
	data []byte
	info StateInfo
	err  error
}

// checkpoint returns l's checkpoint, making it on first use.
func (l *Lease) checkpoint() *checkpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cp == nil {
		l.cp = &checkpoint{}
	}
	return l.cp
}

func newLease(worker, node string, token uint64, deadline time.Time) *Lease {
	return &Lease{worker: worker, node: node, token: token, deadline: deadline}
}

// live reports whether the term is on and its deadline not passed, by the monotonic clock.
func (l *Lease) live(ctx context.Context) bool {
	if ctx != nil && ctx.Err() != nil {
		return false
	}
	l.mu.Lock()
	d := l.deadline
	l.mu.Unlock()
	now := time.Now()
	if l.e != nil {
		now = l.e.cfg.Clock.Now()
	}
	return now.Before(d)
}

// Worker returns the worker's name.
func (l *Lease) Worker() string { return l.worker }

// Node returns the owning node's name.
func (l *Lease) Node() string { return l.node }

// Token returns the fencing token, which the claim shows from its first record: above
// every earlier term's token and at most the claim revision at which this term began.
// Every later term of the same worker, on any node, has a larger token. Pass it to the systems the
// worker writes to so that they can refuse a stale owner.
func (l *Lease) Token() uint64 { return l.token }

// Deadline returns the renew deadline — when the worker's context ends unless a renewal
// succeeds first — and a channel that is closed when the deadline next changes. The time
// carries a monotonic reading. Renewals move it later; a lost lease (the claim deleted,
// overwritten or expired) pulls it in to the moment the loss was seen, and after that it
// never moves again.
func (l *Lease) Deadline() (time.Time, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	return l.deadline, l.changed
}

// changedLocked closes the channel Deadline handed out, if any; l.mu is held.
func (l *Lease) changedLocked() {
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
}

func (l *Lease) extend(deadline time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.fenced && deadline.After(l.deadline) {
		l.deadline = deadline
		l.changedLocked()
	}
}

// fence ends the term now: the deadline becomes now (if it was later) and stays. A
// supervised command's watchdog gets the earlier deadline and kills the command FenceGrace
// from now, instead of FenceGrace after the last renewal's deadline.
func (l *Lease) fence(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fenced = true
	if now.Before(l.deadline) {
		l.deadline = now
		l.changedLocked()
	}
}
