package scheduler

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidSchedule is returned (wrapped) by ParseSchedule and Add for a spec that does
	// not parse, never fires, or sets its own time zone.
	ErrInvalidSchedule = errors.New("scheduler: invalid schedule")
	// ErrInvalidTimeZone is returned (wrapped) by Add for an unknown or machine-local zone.
	ErrInvalidTimeZone = errors.New("scheduler: invalid time zone")
	// ErrInvalidPolicy is returned (wrapped) by Add for an unknown overlap or catch-up policy
	// or a bad catch-up limit.
	ErrInvalidPolicy = errors.New("scheduler: invalid policy")
	// ErrInvalidOption is returned (wrapped) by New and Add for an option value that cannot
	// work (a nil logger, a negative timeout, a takeover delay not below the miss window).
	ErrInvalidOption = errors.New("scheduler: invalid option")
	// ErrJobExists is returned by Add for a name added before.
	ErrJobExists = errors.New("scheduler: job already added")
	// ErrUnknownJob is returned by Remove and Trigger for a name this scheduler does not have.
	ErrUnknownJob = errors.New("scheduler: unknown job")
	// ErrNotStarted is returned by Trigger before Start.
	ErrNotStarted = errors.New("scheduler: not started")
	// ErrClosed is returned by calls on a closed scheduler; it is also the cause of a run's
	// context when the scheduler closes.
	ErrClosed = errors.New("scheduler: closed")
	// ErrSkipped is returned by Trigger when the overlap policy Skip recorded the manual
	// tick as skipped because a run of the job was still going.
	ErrSkipped = errors.New("scheduler: tick skipped: a run of the job is still going")
	// ErrBusy is returned by Trigger when it found no free tick second to claim.
	ErrBusy = errors.New("scheduler: no free tick to claim")

	// The cause of a run's context that ended, from context.Cause(ctx):

	// ErrReplaced: a newer tick of the job started under the overlap policy Replace.
	ErrReplaced = errors.New("scheduler: run replaced by a newer tick")
	// ErrLeaseExpired: no renewal of the run lease succeeded before the renew deadline (the
	// node may be cut off from NATS); another node may record the run lost and retry it.
	ErrLeaseExpired = errors.New("scheduler: run lease deadline passed")
	// ErrLeaseLost: the run lease is gone or belongs to another attempt now.
	ErrLeaseLost = errors.New("scheduler: run lease lost")
	// ErrRemoved: the job was removed from this scheduler.
	ErrRemoved = errors.New("scheduler: job removed")
)

// inputError is a rejected job or schedule: its text names the job and the reason, and it
// matches its sentinel with errors.Is without repeating the sentinel's text.
type inputError struct {
	job   string // "" for errors of ParseSchedule
	kind  error  // one of the sentinels above
	msg   string
	cause error
}

func (e *inputError) Error() string {
	if e.job == "" {
		return "scheduler: " + e.msg
	}
	return fmt.Sprintf("scheduler: job %q: %s", e.job, e.msg)
}

func (e *inputError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

func (e *inputError) forJob(job string) *inputError {
	c := *e
	c.job = job
	return &c
}

func invalid(kind error, format string, a ...any) *inputError {
	return &inputError{kind: kind, msg: fmt.Sprintf(format, a...)}
}
