package scheduler

import "time"

// The run history a job keeps: the records of its finished ticks expire (per-entry TTL),
// so that a per-second job keeps a few thousand keys instead of one per second for the
// whole retention of the jobs bucket (~600,000 for seven days).
const (
	// HistoryTicks: a finished tick's record stays for this many periods of its schedule…
	HistoryTicks = 100
	// MinHistory: …but at least this long, and at most the bucket's retention
	// (kv.Options.JobRetention). A per-second job keeps about an hour of records (3,600
	// keys), an hourly one 100 hours, a daily one the full retention.
	MinHistory = time.Hour
)

// period returns the shortest gap between the next few ticks of s after now, or 0.
func period(s Schedule, now time.Time) time.Duration {
	if s.every > 0 {
		return s.every
	}
	var p time.Duration
	t := s.Next(now)
	for i := 0; i < 10 && !t.IsZero(); i++ {
		n := s.Next(t)
		if n.IsZero() {
			break
		}
		if g := n.Sub(t); p == 0 || g < p {
			p = g
		}
		t = n
	}
	return p
}

// historyTTL is how long the record of a finished tick of j stays.
func (j *job) historyTTL() time.Duration {
	h := max(time.Duration(HistoryTicks)*j.period, MinHistory)
	return min(h, j.s.retention)
}

// recordTTL is the per-entry TTL a record in state gets: a finished tick's record expires
// with the run history; a claimed or running one stays (the bucket's retention) until its
// run ends or the sweeper records it lost.
func (j *job) recordTTL(state string) time.Duration {
	if finalState(state) {
		return j.historyTTL()
	}
	return 0
}

// historyFloor is the oldest tick time whose record is sure to be still there if the tick
// ran: records expire by the stream leader's clock, so a tenth of the history is kept
// back for clocks that disagree.
func (j *job) historyFloor(now time.Time) time.Time {
	h := j.historyTTL()
	return now.Add(-(h - h/10))
}
