package supervise

import (
	"sync"
	"time"
)

// refillDelay is how long after a command started from a spare the replacement spare is
// started: its fork, exec and initialisation of the whole binary (tens of ms of CPU) would
// otherwise compete with the command's own start-up. On the bench (three nodes, 2 cores) the
// new command's exec → main went from 48 to 31 ms median with it (issue 14). A second
// command started within the delay uses another spare (Keep), or starts its own watchdog.
const refillDelay = 250 * time.Millisecond

// Spares keeps watchdogs started ahead of time for each shim (Keep), so that Run takes one that
// already waits for its start message instead of starting one. Starting a watchdog — a
// fork and exec of the whole coordinator binary and its package initialisation — is most
// of the time between a claim and the command's start (about 40 ms of a 70 ms handoff on
// loopback, issue 14); a spare makes it a write to a pipe. A taken spare is replaced in the
// background once the command that took it has started (or failed to), so that the
// spare's own start — a fork and exec of the whole binary — does not compete for the CPU
// with the command's, and refillDelay later, when the command's own start-up is done. A spare is an idle process that exits when its pipe closes: with
// Close, or when the coordinator dies. Spares also reaps, in the background, the
// watchdogs of Run calls that used it once their commands have ended, so that Run returns
// — and a handoff's release goes out — without waiting for a whole Go process to exit
// (3–40 ms on a busy machine). The zero value is not usable: NewSpares. A nil *Spares
// keeps none.
type Spares struct {
	mu      sync.Mutex
	spare   map[string][]*run      // by shim
	keep    map[string]int         // by shim: how many to keep
	filling map[string]int         // by shim: launches under way
	soon    map[string]*time.Timer // by shim: refills planned (refillSoon)
	closed  bool
	wg      sync.WaitGroup // refills and reaps under way
}

// NewSpares returns an empty set of spares; Prepare or Keep starts them.
func NewSpares() *Spares {
	return &Spares{spare: map[string][]*run{}, keep: map[string]int{}, filling: map[string]int{},
		soon: map[string]*time.Timer{}}
}

// Prepare keeps at least one spare watchdog of shim ("" for DefaultShim), starting it in
// the background unless one is there or starting.
func (s *Spares) Prepare(shim string) {
	s.Keep(shim, 1)
}

// Keep keeps at least n spare watchdogs of shim ("" for DefaultShim), so that n commands
// started at once (workers taken over together in a handoff) all find one; it starts the
// missing ones in the background. Each is an idle process.
func (s *Spares) Keep(shim string, n int) {
	if s == nil {
		return
	}
	if shim == "" {
		shim = DefaultShim
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keep[shim] = max(s.keep[shim], n)
	s.refillLocked(shim)
}

func (s *Spares) refillLocked(shim string) {
	for !s.closed && len(s.spare[shim])+s.filling[shim] < s.keep[shim] {
		s.filling[shim]++
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			r := &run{spec: Spec{Name: "spare", Shim: shim}}
			err := r.launch("spare")
			s.mu.Lock()
			defer s.mu.Unlock()
			s.filling[shim]--
			if err != nil {
				return // Run starts its own; the next Prepare tries again
			}
			if s.closed {
				r.discard()
				return
			}
			s.spare[shim] = append(s.spare[shim], r)
		}()
	}
}

// refillSoon plans Prepare(shim) refillDelay from now, unless one is planned already.
func (s *Spares) refillSoon(shim string) {
	if s == nil {
		return
	}
	if shim == "" {
		shim = DefaultShim
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.soon[shim] != nil {
		return
	}
	s.wg.Add(1) // Done when it has run, or by Close when it stopped it first
	s.soon[shim] = time.AfterFunc(refillDelay, func() {
		defer s.wg.Done()
		s.mu.Lock()
		delete(s.soon, shim)
		s.mu.Unlock()
		s.Prepare(shim)
	})
}

// take returns a spare watchdog of shim, or nil. Run plans the next one (refillSoon) once
// its command has started.
func (s *Spares) take(shim string) *run {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.spare[shim]
	if len(sp) == 0 {
		return nil
	}
	r := sp[0]
	s.spare[shim] = sp[1:]
	return r
}

// Close stops the spare watchdogs and waits for them, and for the watchdogs of ended
// commands still being reaped. Run calls that took one are not affected. Safe to call
// more than once.
func (s *Spares) Close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.closed = true
	for shim, t := range s.soon {
		if t.Stop() {
			s.wg.Done()
		}
		delete(s.soon, shim)
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	spares := s.spare
	s.spare = map[string][]*run{}
	s.mu.Unlock()
	for _, rs := range spares {
		for _, r := range rs {
			r.discard()
		}
	}
}

// reap runs f, the end of a Run whose command has exited (the watchdog's exit and the
// goroutines that served it), in the background, and Close waits for it. It reports false
// when there is no one to wait for it (nil or closed Spares): then the caller runs f.
func (s *Spares) reap(f func()) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// discard ends a launched watchdog that was never given a start message: EOF on its
// control pipe makes it exit.
func (r *run) discard() {
	r.ctrl.Close()
	_ = r.cmd.Wait()
	close(r.threadDone)
	r.status.Close()
	r.stdout.Close()
	r.stderr.Close()
	r.wg.Wait()
}
