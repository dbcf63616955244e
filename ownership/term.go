package ownership

import (
	"sort"
	"time"
)

// liveTerm is a term of this node whose worker function has not returned yet: for a
// supervised command, whose watchdog has not reaped it. A term is the unit of "one copy":
// while one of a name's terms is live, the node starts no other term of that name, and
// never clears the claim of a live term, whichever registration of the name it came from.
//
// It is part of its heldTerm (h), whose claim names it.
type liveTerm struct {
	h     *heldTerm
	since time.Time
	next  *liveTerm // another live term of the same name (rare: a term left behind)
	done  lazyDone  // the worker function returned; guarded by the engine's termsMu
}

func (t *liveTerm) worker() string { return t.h.w.name }
func (t *liveTerm) id() string     { return t.h.c.Term } // kv.Claim.Term
func (t *liveTerm) token() uint64  { return t.h.c.Token }

// closedChan is a closed channel, what a lazyDone that closed before anyone asked returns.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// lazyDone is a done channel made only when someone waits: most never are, and one is kept
// per registered worker and per live term. Its owner's lock guards it.
type lazyDone struct {
	closed bool
	c      chan struct{}
}

// wait returns a channel closed once d is.
func (d *lazyDone) wait() <-chan struct{} {
	if d.closed {
		return closedChan
	}
	if d.c == nil {
		d.c = make(chan struct{})
	}
	return d.c
}

// close marks d done, closing its channel if one was made.
func (d *lazyDone) close() {
	d.closed = true
	if d.c != nil {
		close(d.c)
	}
}

// doneC returns a channel closed when t's worker function returned.
func (e *Engine) doneC(t *liveTerm) <-chan struct{} {
	e.termsMu.Lock()
	defer e.termsMu.Unlock()
	return t.done.wait()
}

// termStarted records h's live term: its worker function is about to run.
func (e *Engine) termStarted(h *heldTerm) {
	t := &h.lt
	t.h, t.since = h, e.cfg.Clock.Now()
	e.termsMu.Lock()
	defer e.termsMu.Unlock()
	t.next = e.terms[t.worker()]
	e.terms[t.worker()] = t
}

// termEnded is called when t's worker function returned: a registration of the name that
// waits for it may claim now.
func (e *Engine) termEnded(t *liveTerm) {
	e.termsMu.Lock()
	head := e.terms[t.worker()]
	if head == t {
		head = t.next
	} else {
		for p := head; p != nil; p = p.next {
			if p.next == t {
				p.next = t.next
				break
			}
		}
	}
	if head == nil {
		delete(e.terms, t.worker())
	} else {
		e.terms[t.worker()] = head
	}
	t.done.close()
	e.termsMu.Unlock()
	e.mu.Lock()
	w := e.workers[t.worker()]
	e.mu.Unlock()
	if w != nil {
		w.poke()
	}
}

// termRunning returns a live term of worker, if any.
func (e *Engine) termRunning(worker string) *liveTerm {
	e.termsMu.Lock()
	defer e.termsMu.Unlock()
	return e.terms[worker]
}

// liveTerm returns the live term id of worker, or nil when it cannot still run on this node.
func (e *Engine) liveTerm(worker, id string) *liveTerm {
	e.termsMu.Lock()
	defer e.termsMu.Unlock()
	for t := e.terms[worker]; t != nil; t = t.next {
		if t.id() == id {
			return t
		}
	}
	return nil
}

// liveTerms returns every live term, by worker name and token.
func (e *Engine) liveTerms() []*liveTerm {
	e.termsMu.Lock()
	defer e.termsMu.Unlock()
	var out []*liveTerm
	for _, t := range e.terms {
		for ; t != nil; t = t.next {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].worker() != out[j].worker() {
			return out[i].worker() < out[j].worker()
		}
		return out[i].token() < out[j].token()
	})
	return out
}
