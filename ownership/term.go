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
	done   chan struct{} // closed when the worker function returned
}

// termStarted records a term whose worker function is about to run.
func (e *Engine) termStarted(worker, id string, token uint64) *liveTerm {
	t := &liveTerm{worker: worker, id: id, token: token, since: e.cfg.Clock.Now(), done: make(chan struct{})}
	e.termsMu.Lock()
	defer e.termsMu.Unlock()
	if e.terms[worker] == nil {
		e.terms[worker] = map[string]*liveTerm{}
	}
	e.terms[worker][id] = t
	return t
}

// termEnded is called when t's worker function returned: a registration of the name that
// waits for it may claim now.
func (e *Engine) termEnded(t *liveTerm) {
	e.termsMu.Lock()
	delete(e.terms[t.worker], t.id)
	if len(e.terms[t.worker]) == 0 {
		delete(e.terms, t.worker)
	}
	e.termsMu.Unlock()
	close(t.done)
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
	for _, t := range e.terms[worker] {
		return t
	}
	return nil
}

// liveTerm returns the live term id of worker, or nil when it cannot still run on this node.
func (e *Engine) liveTerm(worker, id string) *liveTerm {
	e.termsMu.Lock()
	defer e.termsMu.Unlock()
	return e.terms[worker][id]
}

// liveTerms returns every live term, by worker name and token.
func (e *Engine) liveTerms() []*liveTerm {
	e.termsMu.Lock()
	defer e.termsMu.Unlock()
	var out []*liveTerm
	for _, ts := range e.terms {
		for _, t := range ts {
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
