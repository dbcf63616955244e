package embedded

import "errors"

var (
	// ErrInvalidConfig is wrapped by every error from Config.Validate and by
	// Start when the configuration cannot work (for example a ClusterSize that
	// disagrees with Peers).
	ErrInvalidConfig = errors.New("embedded: invalid config")

	// ErrNotReady is wrapped by WaitJetStream when its context ends before
	// JetStream answers.
	ErrNotReady = errors.New("embedded: JetStream not ready")

	// ErrClosed is returned by WaitJetStream after Shutdown.
	ErrClosed = errors.New("embedded: server shut down")
)
