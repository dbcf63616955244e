package ownership

import "time"

// Metrics receives the engine's measurements. The daemon implements it with Prometheus
// collectors; NopMetrics discards everything. Methods must not block.
type Metrics interface {
	ClaimAttempt(worker string, won bool)
	Renewal(worker string, latency time.Duration, err error)
	LeaseLost(worker, reason string)
	Takeover(worker string)
	Handoff(worker string)
	Owned(delta int)
	EventPublished(kind, typ string)
	// WorkerFailed counts a worker function that returned an error or panicked (a crash
	// loop shows as a steadily rising count).
	WorkerFailed(worker string)
}

// NopMetrics is a Metrics that does nothing.
type NopMetrics struct{}

func (NopMetrics) ClaimAttempt(string, bool)            {}
func (NopMetrics) Renewal(string, time.Duration, error) {}
func (NopMetrics) LeaseLost(string, string)             {}
func (NopMetrics) Takeover(string)                      {}
func (NopMetrics) Handoff(string)                       {}
func (NopMetrics) Owned(int)                            {}
func (NopMetrics) EventPublished(string, string)        {}
func (NopMetrics) WorkerFailed(string)                  {}
