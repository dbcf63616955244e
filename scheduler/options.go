package scheduler

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/jetcoord/coordinator/internal/tzdata"
	"github.com/jetcoord/coordinator/lease"
	"github.com/jetcoord/coordinator/ownership"
)

// Defaults of the scheduler's timings. A test pins them against the package doc.
const (
	// DefaultTakeoverDelay is how long a node that is not preferred for a job waits after a
	// tick before it claims the tick itself.
	DefaultTakeoverDelay = 2 * time.Second
	// DefaultMissAfter is how long after its time a tick may still be claimed; a tick that no
	// node claimed within it is missed. It rides out a stream leader election (4–9 s).
	DefaultMissAfter = 10 * time.Second
	// DefaultRunLease is the TTL of a run lease: a run whose node has not renewed its lease
	// for this long is lost. The other timings follow from it by lease.Timing.Derive:
	// renewals every TTL/5; the run is cancelled on its own node when none succeeded for
	// TTL*4/5, before any other node may record it lost.
	DefaultRunLease = lease.DefaultTTL
	// MaxAttempts bounds how often a lost tick runs with WithRetryLost: the first run and
	// two retries. A job that kills its node every time does not take the cluster down.
	MaxAttempts = 3
)

// Placement says which node should claim a job's ticks first. The ownership engine
// implements it with rendezvous hashing over the live nodes; the default prefers every
// node, so that all of them race at the tick and compare-and-set picks one.
type Placement interface {
	// Preferred reports whether this node should claim the job's ticks at once. It is
	// called at every tick and must not block.
	Preferred(job string) bool
}

type everyNode struct{}

func (everyNode) Preferred(string) bool { return true }

type options struct {
	log           *slog.Logger
	clock         lease.Clock
	placement     Placement
	events        *ownership.Publisher
	noEvents      bool
	takeoverDelay time.Duration
	missAfter     time.Duration
	timing        lease.Timing // as set; derived in New
}

// Option configures a Scheduler.
type Option func(*options) error

// WithLogger sets the logger. Default slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return invalid(ErrInvalidOption, "WithLogger(nil)")
		}
		o.log = l
		return nil
	}
}

// WithClock sets the time source (tests). Its readings must carry a monotonic clock, as
// time.Now's do: lease deadlines are timed with it. Default lease.RealClock.
func WithClock(c lease.Clock) Option {
	return func(o *options) error {
		if c == nil {
			return invalid(ErrInvalidOption, "WithClock(nil)")
		}
		o.clock = c
		return nil
	}
}

// WithPlacement sets who claims ticks first. Default: every node.
func WithPlacement(p Placement) Option {
	return func(o *options) error {
		if p == nil {
			return invalid(ErrInvalidOption, "WithPlacement(nil)")
		}
		o.placement = p
		return nil
	}
}

// WithPublisher sets where job events go, e.g. the ownership engine's publisher. Default:
// a publisher on the store's connection.
func WithPublisher(p *ownership.Publisher) Option {
	return func(o *options) error {
		if p == nil {
			return invalid(ErrInvalidOption, "WithPublisher(nil); use WithoutEvents to publish none")
		}
		o.events = p
		return nil
	}
}

// WithoutEvents turns job events off.
func WithoutEvents() Option {
	return func(o *options) error { o.noEvents = true; return nil }
}

// WithTakeoverDelay sets how long a node that is not preferred for a job waits after a tick
// before it claims it. Default 2s. Shorter runs a tick whose preferred node is down
// sooner; longer leaves the preferred node more room for a slow claim.
func WithTakeoverDelay(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return invalid(ErrInvalidOption, "takeover delay %v is negative", d)
		}
		o.takeoverDelay = d
		return nil
	}
}

// WithMissAfter sets how long after its time a tick may still be claimed. A tick that no
// node claimed within it is missed (see WithCatchUp). Default 10s. Longer runs more ticks
// late after an outage instead of handing them to the catch-up policy; it must be longer
// than the takeover delay.
func WithMissAfter(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return invalid(ErrInvalidOption, "miss-after %v must be positive", d)
		}
		o.missAfter = d
		return nil
	}
}

// WithRunLease sets the TTL of run leases, the other timings derived from it (see
// WithTiming). Default 15s; at least 1s (server TTLs are whole seconds). Shorter detects a
// dead node's run sooner; in a three-node cluster a stream leader election can block
// renewals for up to ~9 s, which a short lease turns into lost runs.
func WithRunLease(ttl time.Duration) Option { return WithTiming(lease.Timing{TTL: ttl}) }

// WithTiming sets every timing of run leases: TTL, RenewInterval, RenewDeadline and the
// FenceGrace that Tick.FenceGrace hands to a watchdog; zero fields are derived by
// lease.Timing.Derive. The daemon passes the same timing as its ownership engine, so that
// a job's command is killed by RenewDeadline + FenceGrace, before the TTL. It is refused
// with ErrInvalidOption when lease.Timing.Validate refuses it.
func WithTiming(t lease.Timing) Option {
	return func(o *options) error {
		if err := t.Validate(); err != nil {
			return &inputError{kind: ErrInvalidOption, msg: fmt.Sprintf("run lease timing: %v", err), cause: err}
		}
		o.timing = t
		return nil
	}
}

// Overlap says what a tick does while an earlier run of the job is still going, on any
// node.
type Overlap int

const (
	// Skip records the new tick as skipped (event job.skipped). The default.
	Skip Overlap = iota + 1
	// Allow runs both.
	Allow
	// Replace stops the earlier runs (their context ends with ErrReplaced), waits until they
	// ended or their lease ran out, then runs the new tick.
	Replace
)

func (p Overlap) String() string {
	switch p {
	case Skip:
		return "skip"
	case Allow:
		return "allow"
	case Replace:
		return "replace"
	}
	return fmt.Sprintf("Overlap(%d)", int(p))
}

// ParseOverlap parses "skip", "allow" or "replace".
func ParseOverlap(s string) (Overlap, error) {
	for _, p := range []Overlap{Skip, Allow, Replace} {
		if p.String() == s {
			return p, nil
		}
	}
	return 0, invalid(ErrInvalidPolicy, "invalid overlap policy %q: use skip, allow or replace", s)
}

// CatchUp says what happens to missed ticks: ticks that no node claimed within the miss
// window because the whole cluster was down or could not reach NATS.
type CatchUp int

const (
	// None records every missed tick as missed (event job.missed) and runs none. The default.
	None CatchUp = iota + 1
	// Last runs the most recent missed tick once and records the others as missed.
	Last
	// All runs the most recent missed ticks, up to the limit, oldest first and one after the
	// other; older ones are recorded as missed.
	All
)

func (p CatchUp) String() string {
	switch p {
	case None:
		return "none"
	case Last:
		return "last"
	case All:
		return "all"
	}
	return fmt.Sprintf("CatchUp(%d)", int(p))
}

// ParseCatchUp parses "none", "last" or "all".
func ParseCatchUp(s string) (CatchUp, error) {
	for _, p := range []CatchUp{None, Last, All} {
		if p.String() == s {
			return p, nil
		}
	}
	return 0, invalid(ErrInvalidPolicy, "invalid catch-up policy %q: use none, last or all", s)
}

// maxCatchUpScan bounds the missed ticks one catch-up pass looks at: only the most recent
// ones get records, so a week-long outage of a per-second job does not write 600k keys.
const maxCatchUpScan = 1000

type jobOptions struct {
	loc          *time.Location
	timeout      time.Duration
	overlap      Overlap
	catchUp      CatchUp
	catchUpLimit int
	retryLost    bool
}

// JobOption configures one job. Add rejects a bad value with an error naming the job.
type JobOption func(*jobOptions) *inputError

// WithTimeZone sets the zone the schedule is read in: a *time.Location or an IANA name such
// as "Europe/Berlin". Default UTC. time.Local and "Local" are refused: every node must
// compute the same ticks. A name is looked up in the IANA database embedded in the binary
// (internal/tzdata), never in the machine's, which may be another release or missing.
func WithTimeZone[T *time.Location | string](tz T) JobOption {
	return func(o *jobOptions) *inputError {
		switch v := any(tz).(type) {
		case *time.Location:
			if v == nil {
				return invalid(ErrInvalidTimeZone, "time zone is nil (use time.UTC or a zone name)")
			}
			if v == time.Local {
				return invalid(ErrInvalidTimeZone, "time zone Local is the machine's zone, which may differ between nodes: name the zone, e.g. Europe/Berlin, or use UTC")
			}
			o.loc = v
		case string:
			if v == "" || v == "Local" {
				return invalid(ErrInvalidTimeZone, "time zone %q: name the zone, e.g. Europe/Berlin, or use UTC (the machine's zone may differ between nodes)", v)
			}
			loc, err := tzdata.Load(v) // the embedded database, never the machine's: same ticks on every node
			if err != nil {
				return &inputError{kind: ErrInvalidTimeZone, msg: fmt.Sprintf("unknown time zone %q: use an IANA name such as UTC, Europe/Berlin or America/New_York", v), cause: err}
			}
			o.loc = loc
		}
		return nil
	}
}

// WithTimeout ends a run's context after d (cause context.DeadlineExceeded). Default 0: no
// timeout.
func WithTimeout(d time.Duration) JobOption {
	return func(o *jobOptions) *inputError {
		if d < 0 {
			return invalid(ErrInvalidOption, "timeout %v is negative (use 0 for none)", d)
		}
		o.timeout = d
		return nil
	}
}

// WithOverlap sets the overlap policy. Default Skip.
func WithOverlap(p Overlap) JobOption {
	return func(o *jobOptions) *inputError {
		switch p {
		case Skip, Allow, Replace:
			o.overlap = p
			return nil
		}
		return invalid(ErrInvalidPolicy, "invalid overlap policy %v: use Skip, Allow or Replace", p)
	}
}

// WithCatchUp sets the catch-up policy for missed ticks and, for All, how many of the most
// recent missed ticks run (at least 1). Default None.
func WithCatchUp(p CatchUp, limit int) JobOption {
	return func(o *jobOptions) *inputError {
		switch p {
		case None, Last:
		case All:
			if limit < 1 || limit > maxCatchUpScan {
				return invalid(ErrInvalidPolicy, "catch-up All needs a limit from 1 to %d, not %d", maxCatchUpScan, limit)
			}
		default:
			return invalid(ErrInvalidPolicy, "invalid catch-up policy %v: use None, Last or All", p)
		}
		o.catchUp, o.catchUpLimit = p, limit
		return nil
	}
}

// WithRetryLost runs a lost tick again — one whose node died or was cut off mid-run — on
// another node, with Tick.Attempt one higher, up to MaxAttempts runs. That makes the job
// at-least-once, not exactly-once: a run that did all its work but could not record its
// end (its node was cut off from NATS for a lease TTL right after it returned) is lost to
// the others and runs again. Use it for idempotent jobs, or pass Tick.Token on as a fencing
// token. Two attempts never run at the same time, as long as job functions return within
// FenceGrace of their context ending. Default false: a lost run is recorded and not
// repeated, so a tick runs at most once.
func WithRetryLost(retry bool) JobOption {
	return func(o *jobOptions) *inputError { o.retryLost = retry; return nil }
}
