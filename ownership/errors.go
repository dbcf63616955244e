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
	// ErrLeftBehind is returned (wrapped, naming the workers) by Close when worker functions
	// had not returned by ShutdownGrace + FenceGrace: they ignore their context. Their
	// claims are left to expire; another node may start them after the TTL.
	ErrLeftBehind = errors.New("ownership: workers still running after Close")
	// ErrInvalidConfig is returned (wrapped) by Config.Validate.
	ErrInvalidConfig = errors.New("ownership: invalid config")

	// The cause of a worker context that ended, from context.Cause(ctx):

	// ErrLeaseExpired: no renewal succeeded before the renew deadline (the node may be cut off).
	ErrLeaseExpired = errors.New("ownership: lease deadline passed")
	// ErrLeaseLost: the claim was deleted, purged or overwritten (another node holds it, or
	// an operator removed it).
	ErrLeaseLost = errors.New("ownership: lease lost to another claim")
	// ErrStopping: a planned stop — shutdown, unregister or handoff.
	ErrStopping = errors.New("ownership: worker stopping")
)
