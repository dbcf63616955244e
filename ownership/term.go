package ownership

import (
	"sort"
	"time"
)

// liveTerm is a term of this node whose worker function has not returned yet: for a
// supervised command, whose watchdog has not reaped it. A term is the unit of "one copy":
// while one of a name's terms is live, the node starts no other term of that name, and
// never clears the claim of a live term, whichever registration of the name it came from.
type liveTerm struct {
	worker string
	id     string // kv.Claim.Term
	token  uint64
	since  time.Time
	next   *liveTerm // another live term of the same name (rare: a term left behind)
	// Guarded by the engine's termsMu.
	ended bool          // the worker function returned
	done  chan struct{} // made on demand (doneC), closed when the worker function returned
}

// closedChan is a closed channel, the done channel of a term that ended before anyone asked.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// doneC returns a channel closed when t's worker function returned.
func (e *Engine) doneC(t *liveTerm) <-chan struct{} {
	e.termsMu.Lock()
	defer e.termsMu.Unlock()
	if t.ended {
		return closedChan
	}
	if t.done == nil {
		t.done = make(chan struct{})
	}
	return t.done
}

// termStarted records a term whose worker function is about to run.
func (e *Engine) termStarted(worker, id string, token uint64) *liveTerm {
	t := &liveTerm{worker: worker, id: id, token: token, since: e.cfg.Clock.Now()}
	e.termsMu.Lock()
	defer e.termsMu.Unlock()
	t.next = e.terms[worker]
	e.terms[worker] = t
	return t
}

// termEnded is called when t's worker function returned: a registration of the name that
// waits for it may claim now.
func (e *Engine) termEnded(t *liveTerm) {
	e.termsMu.Lock()
	head := e.terms[t.worker]
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
		delete(e.terms, t.worker)
	} else {
		e.terms[t.worker] = head
	}
	t.ended = true
	if t.done != nil {
		close(t.done)
	}
	e.termsMu.Unlock()
	e.mu.Lock()
	w := e.workers[t.worker]
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
		if t.id == id {
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
		if out[i].worker != out[j].worker {
			return out[i].worker < out[j].worker
		}
		return out[i].token < out[j].token
	})
	return out
}
