package supervise

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// RestartPolicy says whether the daemon starts a command again after Run returned while
// the worker is still owned.
type RestartPolicy string

const (
	// RestartAlways restarts after any exit, successful or not.
	RestartAlways RestartPolicy = "always"
	// RestartOnFailure restarts after a non-zero exit, a death by signal or a failed start.
	RestartOnFailure RestartPolicy = "on-failure"
	// RestartNever runs the command once per ownership term.
	RestartNever RestartPolicy = "never"
)

// ParseRestartPolicy reads "always", "on-failure" or "never", in any case.
func ParseRestartPolicy(s string) (RestartPolicy, error) {
	switch p := RestartPolicy(strings.ToLower(strings.TrimSpace(s))); p {
	case RestartAlways, RestartOnFailure, RestartNever:
		return p, nil
	}
	return "", fmt.Errorf("supervise: invalid restart policy %q (valid: %s, %s, %s)", s, RestartAlways, RestartOnFailure, RestartNever)
}

// ShouldRestart reports whether a command whose Run returned err should be started again.
// A run that ended because ownership ended (ErrStopped, ErrFenced) or because the Spec is
// wrong (ErrInvalidSpec) is never restarted, whatever the policy: the first is the
// ownership engine's business, the second cannot get better by retrying.
func (p RestartPolicy) ShouldRestart(err error) bool {
	if errors.Is(err, ErrStopped) || errors.Is(err, ErrFenced) || errors.Is(err, ErrInvalidSpec) {
		return false
	}
	switch p {
	case RestartAlways:
		return true
	case RestartOnFailure:
		return err != nil
	}
	return false
}

// Defaults of a zero Backoff.
const (
	DefaultBackoffInitial    = 500 * time.Millisecond
	DefaultBackoffMax        = 30 * time.Second
	DefaultBackoffMultiplier = 2.0
	DefaultBackoffResetAfter = 60 * time.Second
)

// Backoff computes the delay before restarting a command. The zero value uses the
// defaults: 500ms, doubling up to 30s, back to 500ms after a run of 60s or more. Not safe
// for concurrent use; keep one per worker.
type Backoff struct {
	Initial    time.Duration // first delay; default 500ms
	Max        time.Duration // ceiling; default 30s
	Multiplier float64       // growth per consecutive short run; default 2 (values ≤ 1 mean 2)
	ResetAfter time.Duration // a run at least this long starts over at Initial; default 60s

	last time.Duration
}

// Next returns the delay before the next start, given how long the command that just
// ended ran. A run shorter than ResetAfter grows the delay; a longer one resets it.
func (b *Backoff) Next(ranFor time.Duration) time.Duration {
	initial, maxDelay, mult, reset := b.Initial, b.Max, b.Multiplier, b.ResetAfter
	if initial <= 0 {
		initial = DefaultBackoffInitial
	}
	if maxDelay <= 0 {
		maxDelay = DefaultBackoffMax
	}
	if mult <= 1 {
		mult = DefaultBackoffMultiplier
	}
	if reset <= 0 {
		reset = DefaultBackoffResetAfter
	}
	switch {
	case b.last == 0 || ranFor >= reset:
		b.last = initial
	case float64(b.last)*mult >= float64(maxDelay):
		b.last = maxDelay
	default:
		b.last = time.Duration(float64(b.last) * mult)
	}
	b.last = min(b.last, maxDelay)
	return b.last
}

// Reset makes the next delay Initial again.
func (b *Backoff) Reset() { b.last = 0 }
