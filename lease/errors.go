package lease

import "errors"

var (
	// ErrInvalidTiming: a Timing breaks a rule; the *TimingError says which.
	ErrInvalidTiming = errors.New("lease: invalid timing")
	// ErrLost: the lease's entry is not this holder's any more — deleted, expired or
	// overwritten, as a renewal or the holder's watch found.
	ErrLost = errors.New("lease: lost")
	// ErrExpired: no renewal succeeded within RenewDeadline of the last good one.
	ErrExpired = errors.New("lease: renew deadline passed")
	// ErrStopped: the holder stopped the lease (Stop).
	ErrStopped = errors.New("lease: stopped")
)
