package lease

import (
	"fmt"
	"time"
)

// Defaults of Timing. A test pins them against DefaultTiming and the README.
const (
	// DefaultTTL rides out a JetStream leader election (writes refused for up to ~9 s) in a
	// three-node cluster; a single embedded node can use 3–5 s.
	DefaultTTL = 15 * time.Second
	// DefaultRenewInterval, DefaultRenewDeadline and DefaultFenceGrace are what Derive gives
	// for DefaultTTL.
	DefaultRenewInterval = DefaultTTL / 5
	DefaultRenewDeadline = DefaultTTL * 4 / 5
	DefaultFenceGrace    = DefaultTTL - DefaultRenewDeadline - FenceMargin
	// DefaultShutdownGrace bounds planned stops (shutdown, handoff).
	DefaultShutdownGrace = 30 * time.Second
	// FenceMargin is what a derived FenceGrace keeps back from the TTL (at most half the gap
	// between RenewDeadline and TTL), so that a worker whose lease was lost is gone before a
	// contender's TTL timer runs out, even with a little scheduling delay.
	FenceMargin = 500 * time.Millisecond
	// MinTTL: the server keeps per-entry TTLs in whole seconds, at least one.
	MinTTL = time.Second
)

// Timing is the one rule for lease timings, used by the daemon's config file, the
// ownership engine, the scheduler's run leases and the watchdog of supervised commands. A
// zero field is derived from TTL (see Derive), so that setting TTL alone gives a consistent
// set. Validate checks RenewInterval < RenewDeadline < RenewDeadline + FenceGrace < TTL.
//
// Why the order: the holder counts its deadline from the send time of its last good
// renewal, a contender counts TTL from when it saw that renewal, so a holder stopped by
// RenewDeadline + FenceGrace is gone before anyone else may conclude the lease is dead —
// as long as the two machines' monotonic clocks run at about the same rate.
type Timing struct {
	// TTL: a lease not renewed for this long is dead and may be taken over. Default 15s.
	// Shorter fails over faster; in a three-node cluster the KV stream can refuse writes for
	// up to ~9 s during a leader election, which a short TTL turns into stops.
	TTL time.Duration
	// RenewInterval: how often the holder renews (a quarter of it after a failed attempt).
	// Default TTL/5 (3s). Shorter costs more writes; longer leaves fewer retries.
	RenewInterval time.Duration
	// RenewDeadline: the holder's work is stopped when no renewal has succeeded for this
	// long, counted from the send time of the last good renewal. Default TTL*4/5 (12s).
	// RenewDeadline − RenewInterval should exceed the longest write stall.
	RenewDeadline time.Duration
	// FenceGrace: how long work whose lease ended may take to stop before it is killed
	// (supervised commands) or reported as stuck (Go functions). Default
	// TTL − RenewDeadline − min(FenceMargin, (TTL − RenewDeadline)/2) (2.5s).
	FenceGrace time.Duration
	// ShutdownGrace: on a planned stop the lease is kept renewed for up to this long while
	// the work stops. Default 30s.
	ShutdownGrace time.Duration
}

// DefaultTiming returns the defaults: TTL 15s, renew every 3s, deadline 12s, fence grace
// 2.5s, shutdown grace 30s.
func DefaultTiming() Timing { return Timing{}.Derive() }

// Derive returns t with every zero field replaced by its default or its value derived from
// TTL. Negative fields are left as they are, for Validate to report.
func (t Timing) Derive() Timing {
	if t.TTL == 0 {
		t.TTL = DefaultTTL
	}
	if t.RenewInterval == 0 {
		t.RenewInterval = t.TTL / 5
	}
	if t.RenewDeadline == 0 {
		t.RenewDeadline = t.TTL * 4 / 5
	}
	if t.FenceGrace == 0 {
		gap := t.TTL - t.RenewDeadline
		t.FenceGrace = gap - min(FenceMargin, gap/2)
	}
	if t.ShutdownGrace == 0 {
		t.ShutdownGrace = DefaultShutdownGrace
	}
	return t
}

// Rule names the timing rule a TimingError breaks, so that callers with their own
// vocabulary (the config file's keys) can word the fix themselves.
type Rule int

// The rules, in the order Validate checks them.
const (
	// RuleNegative: a field is negative (Field names it).
	RuleNegative Rule = iota + 1
	// RuleTTLTooShort: TTL < MinTTL.
	RuleTTLTooShort
	// RuleIntervalBeforeDeadline: RenewInterval >= RenewDeadline — the holder would give up
	// before it even tried to renew.
	RuleIntervalBeforeDeadline
	// RuleDeadlineBeforeTTL: RenewDeadline >= TTL — work could still run when another node
	// takes over.
	RuleDeadlineBeforeTTL
	// RuleFenceBeforeTTL: RenewDeadline + FenceGrace >= TTL — a new holder may start before
	// the old work is killed.
	RuleFenceBeforeTTL
)

// TimingError says which rule a Timing breaks. It matches ErrInvalidTiming with errors.Is.
type TimingError struct {
	Rule Rule
	// Field is the Go name of the field to change first: TTL, RenewInterval, RenewDeadline,
	// FenceGrace or ShutdownGrace.
	Field string
	// Timing is the checked set, after Derive.
	Timing Timing
	msg    string
}

func (e *TimingError) Error() string        { return "lease: invalid timing: " + e.msg }
func (e *TimingError) Is(target error) bool { return target == ErrInvalidTiming }

// Validate checks t after Derive. It returns a *TimingError (matching ErrInvalidTiming)
// naming the first rule broken, or nil.
func (t Timing) Validate() error {
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"TTL", t.TTL}, {"RenewInterval", t.RenewInterval}, {"RenewDeadline", t.RenewDeadline},
		{"FenceGrace", t.FenceGrace}, {"ShutdownGrace", t.ShutdownGrace}} {
		if f.v < 0 {
			return &TimingError{Rule: RuleNegative, Field: f.name, Timing: t,
				msg: fmt.Sprintf("%s %v is negative (use 0 for the default)", f.name, f.v)}
		}
	}
	d := t.Derive()
	bad := func(r Rule, field, format string, a ...any) error {
		return &TimingError{Rule: r, Field: field, Timing: d, msg: fmt.Sprintf(format, a...)}
	}
	switch {
	case d.TTL < MinTTL:
		return bad(RuleTTLTooShort, "TTL", "TTL %v is too short: the server keeps per-entry TTLs in whole seconds; use at least %v", d.TTL, MinTTL)
	case d.RenewInterval >= d.RenewDeadline:
		return bad(RuleIntervalBeforeDeadline, first(t, "RenewInterval", "RenewDeadline"),
			"RenewInterval %v must be shorter than RenewDeadline %v, or a single slow renewal stops the work", d.RenewInterval, d.RenewDeadline)
	case d.RenewDeadline >= d.TTL:
		return bad(RuleDeadlineBeforeTTL, first(t, "RenewDeadline", "TTL"),
			"RenewDeadline %v must be shorter than TTL %v, or another node may start the work before this one stops it", d.RenewDeadline, d.TTL)
	case d.RenewDeadline+d.FenceGrace >= d.TTL:
		return bad(RuleFenceBeforeTTL, first(t, "FenceGrace", "RenewDeadline", "TTL"),
			"RenewDeadline + FenceGrace (%v + %v) must stay below TTL %v, or a new holder may start before the old work is killed", d.RenewDeadline, d.FenceGrace, d.TTL)
	}
	return nil
}

// first returns the first of fields that t sets, else "TTL": the value the user chose is
// the one to change.
func first(t Timing, fields ...string) string {
	for _, f := range fields {
		var v time.Duration
		switch f {
		case "TTL":
			v = t.TTL
		case "RenewInterval":
			v = t.RenewInterval
		case "RenewDeadline":
			v = t.RenewDeadline
		case "FenceGrace":
			v = t.FenceGrace
		}
		if v != 0 {
			return f
		}
	}
	return "TTL"
}
