package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// MaxState is the largest state blob a worker may checkpoint. State is meant for a cursor,
// an offset, a small summary — not a database.
const MaxState = 64 << 10

// MaxStateRecord bounds a whole state record: the blob, base64-encoded, plus the fields.
const MaxStateRecord = MaxState*4/3 + 4<<10

// ErrStaleToken is returned by SaveState when a newer ownership term has written state.
var ErrStaleToken = errors.New("kv: state written by a newer owner (stale fencing token)")

// StateRecord is a worker's last checkpoint in the state bucket (`nats kv get <ns>_state W`).
type StateRecord struct {
	Worker string    `json:"worker"`
	Node   string    `json:"node"`
	Token  uint64    `json:"token"` // fencing token of the term that wrote it
	Saved  time.Time `json:"saved"`
	Size   int       `json:"size"`
	Data   []byte    `json:"data"` // base64 in JSON
}

// GetState returns the worker's last checkpoint and its revision, as the stream leader has
// it (a new owner must not start from an older checkpoint); ErrNotFound if none.
func (b *Bucket) GetState(ctx context.Context, worker string) (StateRecord, uint64, error) {
	e, err := b.GetLeader(ctx, worker)
	if err != nil {
		return StateRecord{}, 0, err
	}
	var r StateRecord
	if err := json.Unmarshal(e.Value, &r); err != nil || r.Worker != worker {
		return StateRecord{}, e.Revision, fmt.Errorf("%w: state %q is not a state record", ErrMalformed, worker)
	}
	return r, e.Revision, nil
}

// SaveState writes rec if no newer term wrote state since: it reads the current record and
// refuses with ErrStaleToken when its token is larger than rec.Token, then writes with
// compare-and-set at the revision read (ErrConflict if someone wrote in between). A blob
// over MaxState returns ErrTooLarge.
func (b *Bucket) SaveState(ctx context.Context, rec StateRecord) error {
	if len(rec.Data) > MaxState {
		return fmt.Errorf("%w: state of %q is %d bytes, the limit is %d (keep a cursor or a summary, not the data)",
			ErrTooLarge, rec.Worker, len(rec.Data), MaxState)
	}
	rec.Size = len(rec.Data)
	value, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("kv: encoding state: %w", err)
	}
	cur, rev, err := b.GetState(ctx, rec.Worker)
	switch {
	case errors.Is(err, ErrNotFound):
		_, err = b.Create(ctx, rec.Worker, value, 0)
		if errors.Is(err, ErrExists) {
			return fmt.Errorf("%w: state of %q written concurrently", ErrConflict, rec.Worker)
		}
		return err
	case errors.Is(err, ErrMalformed):
		// A hand-written value: replace it, still with compare-and-set.
	case err != nil:
		return err
	case cur.Token > rec.Token:
		return fmt.Errorf("%w: %q has state from token %d, this owner has %d", ErrStaleToken, rec.Worker, cur.Token, rec.Token)
	}
	_, err = b.Update(ctx, rec.Worker, value, rev, 0)
	return err
}
