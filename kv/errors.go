package kv

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	// ErrExists is returned by Create when a live entry already holds the key.
	ErrExists = errors.New("kv: key already exists")
	// ErrConflict is returned by Update and Delete when the key's last revision is not the
	// expected one: someone else wrote it in between (NATS codes 10071 and 10164).
	ErrConflict = errors.New("kv: revision conflict")
	// ErrNotFound is returned by Get when the key has no live entry (never written, deleted,
	// or expired).
	ErrNotFound = errors.New("kv: key not found")
	// ErrUnavailable is returned when JetStream did not answer in time: no stream leader,
	// no responders, a dropped connection. The operation may be retried.
	ErrUnavailable = errors.New("kv: jetstream unavailable")
	// ErrBucketNotFound is returned when a coordination bucket does not exist.
	ErrBucketNotFound = errors.New("kv: bucket not found")
	// ErrInvalidName is returned for worker, job or node names that are not usable as a key
	// and subject token.
	ErrInvalidName = errors.New("kv: invalid name")
	// ErrMalformed is returned (wrapped) when a stored value cannot be decoded.
	ErrMalformed = errors.New("kv: malformed record")
	// ErrTooLarge is returned when a value is larger than the store accepts.
	ErrTooLarge = errors.New("kv: value too large")
)

// translate maps NATS and JetStream errors onto this package's sentinels, keeping the original
// in the chain for logs.
func translate(op, key string, err error) error {
	if err == nil {
		return nil
	}
	var sentinel error
	var apiErr *jetstream.APIError
	switch {
	case op == "create" && errors.Is(err, jetstream.ErrKeyExists):
		sentinel = ErrExists
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		sentinel = ErrConflict
	case errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant):
		sentinel = ErrConflict
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		sentinel = ErrNotFound
	case errors.Is(err, jetstream.ErrBucketNotFound), errors.Is(err, jetstream.ErrStreamNotFound),
		errors.Is(err, nats.ErrStreamNotFound): // a KV watch uses the legacy push API
		sentinel = ErrBucketNotFound
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
		sentinel = ErrTooLarge
	case errors.Is(err, nats.ErrMaxPayload):
		sentinel = ErrTooLarge
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting):
		sentinel = ErrUnavailable
	case errors.As(err, &apiErr) && apiErr.Code == 503:
		sentinel = ErrUnavailable
	default:
		return fmt.Errorf("kv: %s %q: %w", op, key, err)
	}
	return fmt.Errorf("%w: %s %q: %w", sentinel, op, key, err)
}
