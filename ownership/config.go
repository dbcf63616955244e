package ownership

import (
	"fmt"
	"time"
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

// derive fills zero timings from TTL.
func (c *Config) derive() {
	if c.TTL <= 0 {
		return
	}
	if c.RenewInterval == 0 {
		c.RenewInterval = c.TTL / 5
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = c.TTL * 4 / 5
	}
	if c.FenceGrace == 0 {
		gap := c.TTL - c.RenewDeadline
		c.FenceGrace = gap - min(500*time.Millisecond, gap/2)
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 30 * time.Second
	}
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
	if c.Clock == nil {
		c.Clock = RealClock{}
	}
}

// Validate checks the timings against each other. Zero fields are derived from TTL first.
func (c Config) Validate() error {
	c.derive()
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
	}
	switch {
	case c.TTL < time.Second:
		return bad("TTL %v is too short: the server keeps per-entry TTLs in whole seconds; use at least 1s", c.TTL)
	case c.RenewInterval <= 0:
		return bad("RenewInterval %v must be positive", c.RenewInterval)
	case c.RenewInterval >= c.RenewDeadline:
		return bad("RenewInterval %v must be shorter than RenewDeadline %v, or a single slow renewal stops the worker", c.RenewInterval, c.RenewDeadline)
	case c.RenewDeadline >= c.TTL:
		return bad("RenewDeadline %v must be shorter than TTL %v, or another node may start the worker before this one stops it", c.RenewDeadline, c.TTL)
	case c.FenceGrace <= 0 || c.RenewDeadline+c.FenceGrace >= c.TTL:
		return bad("FenceGrace %v must be positive and RenewDeadline + FenceGrace (%v) shorter than TTL %v", c.FenceGrace, c.RenewDeadline+c.FenceGrace, c.TTL)
	case c.ShutdownGrace <= 0:
		return bad("ShutdownGrace %v must be positive", c.ShutdownGrace)
	case c.ClaimGrace < 0 || c.RebalanceDelay < 0 || c.RebalanceRate <= 0:
		return bad("ClaimGrace %v and RebalanceDelay %v must not be negative, RebalanceRate %v must be positive", c.ClaimGrace, c.RebalanceDelay, c.RebalanceRate)
	case c.RestartBackoff <= 0 || c.RestartBackoffMax < c.RestartBackoff:
		return bad("RestartBackoff %v must be positive and at most RestartBackoffMax %v", c.RestartBackoff, c.RestartBackoffMax)
	}
	return nil
}
