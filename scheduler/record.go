package scheduler

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jetcoord/coordinator/kv"
)

// Run states, in the "state" field of a run record.
const (
	StateClaimed   = "claimed"   // the tick is won; the run has not started (Replace waits here)
	StateRunning   = "running"   // the tick is won and its run started (or starts now)
	StateSucceeded = "succeeded" // it returned nil
	StateFailed    = "failed"    // it returned an error or panicked, or it was replaced before it started
	StateSkipped   = "skipped"   // overlap policy Skip: an earlier run was still going
	StateMissed    = "missed"    // no node claimed the tick in time and catch-up did not run it
	StateLost      = "lost"      // its node died, was cut off or shut down mid-run
)

// finalState reports whether a run in state s is over.
func finalState(s string) bool {
	switch s {
	case StateSucceeded, StateFailed, StateSkipped, StateMissed, StateLost:
		return true
	}
	return false
}

// Run is the record of one tick, stored as JSON under the tick's claim key in the jobs
// bucket and copied to <job>.last. What `nats kv get coord_jobs report.1767225600` prints:
//
//	{"job":"report","tick":"2026-01-01T00:00:00Z","node":"node-a","token":812,"attempt":1,
//	 "state":"succeeded","reason":"scheduled","claimed":"…","started":"…","ended":"…",
//	 "claim":"…"}
type Run struct {
	Job  string    `json:"job"`
	Tick time.Time `json:"tick"` // the scheduled time (UTC); for a manual run, when it was triggered
	// Manual is set for Trigger's runs; their key is <job>.<unix>-manual.
	Manual bool   `json:"manual,omitempty"`
	Node   string `json:"node"`
	// Token is the revision of the entry that claimed this attempt. The record written by
	// the claiming create cannot know its own revision and carries 0, which means "this
	// entry's revision"; later writes carry the number.
	Token   uint64    `json:"token"`
	Attempt int       `json:"attempt"`
	State   string    `json:"state"`
	Reason  string    `json:"reason,omitempty"` // why it ran or did not: scheduled, late, catch-up, manual, retry, overlap, replaced, lease expired, shutdown …
	Claimed time.Time `json:"claimed"`
	Started time.Time `json:"started,omitzero"`
	Ended   time.Time `json:"ended,omitzero"`
	Error   string    `json:"error,omitempty"`
	// Claim is a random id of the claim attempt; a node whose create timed out finds out
	// with it whether the create landed.
	Claim string `json:"claim"`
	// Revision is set only in <job>.last: the revision of the tick entry it copies, so that a
	// late copy never overwrites a newer one.
	Revision uint64 `json:"revision,omitempty"`
}

func (r Run) encode() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("scheduler: encoding run record: %v", err)) // plain types only
	}
	return b
}

func decodeRun(key string, b []byte) (Run, error) {
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return Run{}, fmt.Errorf("%w: run record %q: %v", kv.ErrMalformed, key, err)
	}
	if r.Job == "" || r.Node == "" || r.State == "" || r.Tick.IsZero() {
		return Run{}, fmt.Errorf("%w: run record %q: job, node, state or tick missing", kv.ErrMalformed, key)
	}
	return r, nil
}

// tokenAt returns the record's token, given the revision it was read at.
func (r Run) tokenAt(rev uint64) uint64 {
	if r.Token != 0 {
		return r.Token
	}
	return rev
}

// Lease states, in the "state" field of a run lease. (Earlier versions created run leases
// "claiming" and marked them "running" once the tick was won: such a lease does not count
// as a run for Skip and Replace, as before.)
const (
	leaseRunning = "running"  // created before the tick claim; its run waits, runs or is being recorded
	leaseDone    = "done"     // released after the final record; expires within a second
	leaseLost    = "lost"     // released after recording the run lost; others may retry it
	leaseCatchUp = "catch-up" // the catch-up lock
)

// leaseRecord is the value of a run lease <job>.<tick>.run and of the catch-up lock
// <job>.catchup: short per-entry TTL, renewed by the node holding it.
type leaseRecord struct {
	Job     string      `json:"job"`
	Tick    time.Time   `json:"tick,omitzero"`
	Node    string      `json:"node"`
	Claim   string      `json:"claim"`
	Attempt int         `json:"attempt,omitempty"`
	State   string      `json:"state"`
	Renewed time.Time   `json:"renewed"`
	TTL     kv.Duration `json:"ttl"`
	// Stop is written by a newer run under overlap policy Replace: the run holding the lease
	// must stop. It says who asked.
	Stop string `json:"stop,omitempty"`
}

func (l leaseRecord) encode() []byte {
	b, err := json.Marshal(l)
	if err != nil {
		panic(fmt.Sprintf("scheduler: encoding lease: %v", err))
	}
	return b
}

func decodeLease(key string, b []byte) (leaseRecord, error) {
	var l leaseRecord
	if err := json.Unmarshal(b, &l); err != nil {
		return leaseRecord{}, fmt.Errorf("%w: lease %q: %v", kv.ErrMalformed, key, err)
	}
	if l.Node == "" || l.Claim == "" {
		return leaseRecord{}, fmt.Errorf("%w: lease %q: node or claim missing", kv.ErrMalformed, key)
	}
	return l, nil
}

// Keys in the jobs bucket, for job J (J may contain dots; each suffix is one token, so the
// keys of different jobs never collide):
//
//	J.<unix>           tick claim and run record of a scheduled tick
//	J.<unix>-manual    the same for a manual run (Trigger)
//	J.<tick>.run       run lease of that tick (per-entry TTL)
//	J.last             copy of the latest tick's record
//	J.catchup          catch-up lock (per-entry TTL)
const manualSuffix = "-manual"

func tickToken(t time.Time, manual bool) string {
	s := strconv.FormatInt(t.Unix(), 10)
	if manual {
		s += manualSuffix
	}
	return s
}

func tickKey(job string, t time.Time, manual bool) string {
	return job + "." + tickToken(t, manual)
}

func leaseKeyOf(tickKey string) string { return tickKey + ".run" }
func lastKey(job string) string        { return job + ".last" }
func catchUpKey(job string) string     { return job + ".catchup" }
func leaseFilter(job string) string    { return job + ".*.run" }

// parseLeaseKey returns the tick key of a run lease key of job.
func parseLeaseKey(job, key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, job+".")
	if !ok {
		return "", false
	}
	tok, ok := strings.CutSuffix(rest, ".run")
	if !ok || strings.Contains(tok, ".") {
		return "", false
	}
	if _, err := strconv.ParseInt(strings.TrimSuffix(tok, manualSuffix), 10, 64); err != nil {
		return "", false
	}
	return job + "." + tok, true
}
