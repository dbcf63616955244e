package supervise

import (
	"errors"
	"fmt"
	"syscall"
)

var (
	// ErrFenced is returned (wrapped) by Run when the watchdog stopped the command because
	// the lease deadline passed without an extension, or when the deadline had already
	// passed before the command could start (then it was never started).
	ErrFenced = errors.New("supervise: lease deadline passed without extension, command fenced")

	// ErrStopped is returned (wrapped, together with ctx.Err()) by Run when its context
	// ended and the command was stopped on that request.
	ErrStopped = errors.New("supervise: command stopped on request")

	// ErrStart is returned (wrapped) by Run when the command could not be started: the
	// program was not found, is not executable, or Dir does not exist. Nothing was started.
	ErrStart = errors.New("supervise: command not started")

	// ErrWatchdog is returned (wrapped) by Run when the watchdog process itself failed: it
	// could not be started, died without reporting, or spoke an unknown protocol. Run then
	// kills what is left of the command's process group, as a best effort.
	ErrWatchdog = errors.New("supervise: watchdog failed")

	// ErrInvalidSpec is returned (wrapped) by Spec.Validate and Run for a malformed Spec or
	// a nil Lease.
	ErrInvalidSpec = errors.New("supervise: invalid spec")
)

// ExitError reports a command that exited with a non-zero status or was killed by a
// signal. Run returns it bare when the command ended by itself, and wraps it in ErrFenced
// or ErrStopped errors when the command ended because it was told to stop.
type ExitError struct {
	Worker string
	// Code is the exit status, or -1 when the command was killed by a signal.
	Code int
	// Signal is the signal that killed the command, or 0 when it exited.
	Signal syscall.Signal
}

// ExitCode returns Code: the exit status, or -1 when a signal killed the command.
func (e *ExitError) ExitCode() int { return e.Code }

func (e *ExitError) Error() string {
	return fmt.Sprintf("supervise: worker %q: command %s", e.Worker, e.describe())
}

func (e *ExitError) describe() string {
	if e.Signal != 0 {
		return "killed by " + signalName(e.Signal)
	}
	return fmt.Sprintf("exited with code %d", e.Code)
}

// endError is how a command that was told to stop ended: ErrFenced or ErrStopped, the
// context's error if any, and the *ExitError if it did not exit 0. errors.Is and
// errors.As find all three.
type endError struct {
	reason error
	cause  error
	exit   *ExitError
	msg    string
}

func newEndError(reason error, worker string, cause error, exit *ExitError) *endError {
	msg := fmt.Sprintf("%v: worker %q", reason, worker)
	if cause != nil {
		msg += fmt.Sprintf(" (%v)", cause)
	}
	if exit != nil {
		msg += ": command " + exit.describe()
	} else {
		msg += ": command exited with code 0"
	}
	return &endError{reason: reason, cause: cause, exit: exit, msg: msg}
}

func (e *endError) Error() string { return e.msg }

func (e *endError) Unwrap() []error {
	errs := []error{e.reason}
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	if e.exit != nil {
		errs = append(errs, e.exit)
	}
	return errs
}
