package ownership

import "errors"

var (
	// ErrNotOwned is returned by Lookup when no live claim holds the worker.
	ErrNotOwned = errors.New("ownership: worker not owned")
	// ErrUnknownOwner is returned (wrapped) by Lookup when the worker's claim cannot be read:
	// the bucket holds a value that is not a claim. The worker counts as owned by someone
	// unknown until that value is renewed or cleared.
	ErrUnknownOwner = errors.New("ownership: worker owned by an unknown claim")
	// ErrAlreadyRegistered is returned by Register for a name registered before.
	ErrAlreadyRegistered = errors.New("ownership: worker already registered")
	// ErrNotRegistered is returned by Unregister and Release for a name this node does not have.
	ErrNotRegistered = errors.New("ownership: worker not registered")
	// ErrClosed is returned by calls on an engine that was closed.
	ErrClosed = errors.New("ownership: engine closed")
	// ErrInvalidConfig is returned (wrapped) by Config.Validate.
	ErrInvalidConfig = errors.New("ownership: invalid config")

	// The cause of a worker context that ended, from context.Cause(ctx):

	// ErrLeaseExpired: no renewal succeeded before the renew deadline (the node may be cut off).
	ErrLeaseExpired = errors.New("ownership: lease deadline passed")
	// ErrLeaseLost: another node holds the claim now.
	ErrLeaseLost = errors.New("ownership: lease lost to another claim")
	// ErrStopping: a planned stop — shutdown, unregister or handoff.
	ErrStopping = errors.New("ownership: worker stopping")
)
