package ownership

import (
	"fmt"
	"math"
	"time"

	"github.com/jetcoord/coordinator/lease"
)

// Config holds the lease timings of an engine. Start from DefaultConfig or ConfigForTTL.
type Config struct {
	// TTL: a claim not renewed for this long is dead and may be taken over. Default 15s.
	// Shorter fails over faster; in a three-node cluster the KV stream can refuse writes for
	// up to ~9 s during a leader election, which a short TTL turns into worker stops.
	TTL time.Duration
	// RenewInterval: how often the owner renews. Default TTL/5 (3s).
	RenewInterval time.Duration
	// RenewDeadline: the owner stops its worker when no renewal has succeeded for this long,
	// counted from the send time of the last successful renewal. Default TTL*4/5 (12s).
	RenewDeadline time.Duration
	// FenceGrace: how long a worker whose lease is lost may take to stop before it is
	// killed (supervised commands) or reported as stuck (Go workers). Default
	// TTL − RenewDeadline − min(0.5s, (TTL − RenewDeadline)/2) (2.5s). It must end before
	// TTL, when another node may start the worker.
	FenceGrace time.Duration
	// ShutdownGrace: on a planned stop the claim is kept renewed for up to this long while
	// the worker stops, then released. Default 30s.
	ShutdownGrace time.Duration
	// RestartBackoff is the first delay before a failed worker is restarted; it doubles up to
	// RestartBackoffMax and resets after a run of a minute. Defaults 500ms and 30s.
	RestartBackoff    time.Duration
	RestartBackoffMax time.Duration
	// ClaimGrace: a node that is not the preferred node for a worker claims it only after it
	// stayed unowned this long, so that the preferred node gets it and a worker whose
	// preferred node is down still runs. Default 2×RenewInterval (6s).
	ClaimGrace time.Duration
	// RebalanceDelay: after membership changes, owners wait until it has been quiet this
	// long before handing workers to their new preferred nodes; flapping membership causes
	// no churn. Default 2×RenewInterval (6s).
	RebalanceDelay time.Duration
	// RebalanceRate bounds handoffs per second per node during a rebalance. Default 50.
	RebalanceRate float64
	// RebalanceThreshold: nodes hand workers over to balance the load only when some node
	// runs more or less than its share (names × weight / total weight, rounded up) by more
	// than this fraction of it (at least one worker); then every node above its share hands
	// the excess over. Otherwise workers stay where they run. Default 0.1. Higher moves fewer workers after joins and restarts and
	// leaves the load less even (with 0.1, 1,000 workers on 3 nodes even out after a join,
	// a singleton or a small set never follows a rejoining node); 0 still keeps a slack of
	// one worker. A leaving or draining node's workers always move.
	RebalanceThreshold float64
	// ClaimTTL is the server-side TTL of a claim record, a backstop only: a claim lives as
	// long as the node lease it is bound to (the node's membership record, renewed every
	// RenewInterval), and its owner writes it again at half of ClaimTTL. Default 24h; at
	// least 10×TTL. Shorter costs more writes; longer keeps the claims of a node that
	// vanished with its record in the store longer (they are taken over anyway).
	ClaimTTL time.Duration
	// TakeoverRate bounds the takeovers of dead claims per second per node (burst 128), so
	// that the failover of a node holding many workers is no write storm. Default 500.
	TakeoverRate float64
	// Clock is the time source. Default RealClock.
	Clock Clock
}

// DefaultConfig returns the defaults: TTL 15s, renew every 3s, deadline 12s.
func DefaultConfig() Config { return ConfigForTTL(15 * time.Second) }

// ConfigForTTL returns the defaults with every timing derived from ttl.
func ConfigForTTL(ttl time.Duration) Config {
	c := Config{TTL: ttl, ShutdownGrace: 30 * time.Second}
	c.derive()
	return c
}

// Timing returns the lease timings of c, as set (zero fields not derived).
func (c Config) Timing() lease.Timing {
	return lease.Timing{TTL: c.TTL, RenewInterval: c.RenewInterval, RenewDeadline: c.RenewDeadline,
		FenceGrace: c.FenceGrace, ShutdownGrace: c.ShutdownGrace}
}

// derive fills zero timings from TTL by the one rule, lease.Timing.Derive.
func (c *Config) derive() {
	if c.TTL <= 0 {
		return
	}
	t := c.Timing().Derive()
	c.RenewInterval, c.RenewDeadline, c.FenceGrace, c.ShutdownGrace = t.RenewInterval, t.RenewDeadline, t.FenceGrace, t.ShutdownGrace
	if c.RestartBackoff == 0 {
		c.RestartBackoff = 500 * time.Millisecond
	}
	if c.RestartBackoffMax == 0 {
		c.RestartBackoffMax = 30 * time.Second
	}
	if c.ClaimGrace == 0 {
		c.ClaimGrace = 2 * c.RenewInterval
	}
	if c.RebalanceDelay == 0 {
		c.RebalanceDelay = 2 * c.RenewInterval
	}
	if c.RebalanceRate == 0 {
		c.RebalanceRate = 50
	}
	if c.RebalanceThreshold == 0 {
		c.RebalanceThreshold = DefaultRebalanceThreshold
	}
	if c.ClaimTTL == 0 {
		c.ClaimTTL = max(24*time.Hour, 10*c.TTL)
	}
	if c.TakeoverRate == 0 {
		c.TakeoverRate = 500
	}
	if c.Clock == nil {
		c.Clock = RealClock{}
	}
}

// Validate checks the timings against each other by the one rule, lease.Timing.Validate
// (zero fields are derived from TTL first), and the engine's own settings. A TTL of 0 is
// refused here (start from DefaultConfig or ConfigForTTL).
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
	}
	if c.TTL == 0 {
		return bad("TTL is 0: start from DefaultConfig() or ConfigForTTL(ttl)")
	}
	if err := c.Timing().Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	c.derive()
	switch {
	case c.ClaimGrace < 0 || c.RebalanceDelay < 0 || c.RebalanceRate <= 0:
		return bad("ClaimGrace %v and RebalanceDelay %v must not be negative, RebalanceRate %v must be positive", c.ClaimGrace, c.RebalanceDelay, c.RebalanceRate)
	case c.RebalanceThreshold < 0 || math.IsNaN(c.RebalanceThreshold):
		return bad("RebalanceThreshold %v must not be negative (0.1 is the default; larger moves fewer workers)", c.RebalanceThreshold)
	case c.ClaimTTL < 10*c.TTL:
		return bad("ClaimTTL %v must be at least 10×TTL (%v)", c.ClaimTTL, 10*c.TTL)
	case c.TakeoverRate <= 0:
		return bad("TakeoverRate %v must be positive", c.TakeoverRate)
	case c.RestartBackoff <= 0 || c.RestartBackoffMax < c.RestartBackoff:
		return bad("RestartBackoff %v must be positive and at most RestartBackoffMax %v", c.RestartBackoff, c.RestartBackoffMax)
	}
	return nil
}
