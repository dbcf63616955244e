package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Claim states.
const (
	StateRunning  = "running"  // the owner runs the worker
	StateStopping = "stopping" // the owner is stopping the worker (shutdown, handoff)
	StateFenced   = "fenced"   // the owner's worker was stopped after a lost renewal
	// StateReleased is the state of the record a release leaves as the body of its delete
	// marker: the owner's worker has stopped, so the next owner may start at once. Any other
	// delete, a purge or an expiry marker says nothing of the old worker.
	StateReleased = "released"
)

// Claim is the record that says who owns a worker, stored under the worker's name in the
// workers bucket. It is human-readable JSON so `nats kv get` shows it as is.
type Claim struct {
	Worker      string `json:"worker"`
	Node        string `json:"node"`
	Incarnation string `json:"incarnation"`
	// Term identifies one ownership term: a fresh random id for every claim. A node knows
	// its own terms by it (which have ended, which may still run); leftovers of an ended
	// term are cleared, a claim of a term that may still run never is.
	Term string `json:"term,omitempty"`
	// Lease names the node lease the claim is bound to, "<nodes bucket>/<node>": the
	// claim lives while that node's membership record of Incarnation is renewed, and
	// needs no renewal of its own. Empty in claims of older versions, which are renewed
	// one by one.
	Lease string `json:"lease,omitempty"`
	// Token is the fencing token of the term, in every record of it from the first: a
	// number above every earlier term's token for this worker and at most the revision of
	// the term's first record. A claim is written by compare-and-set on the key's last
	// change seen, at revision r: its token is r+1, or, when the stream keeps nothing for
	// the key, the bucket's last revision read after seeing that, plus one. Older versions
	// wrote 0 in a term's first record, meaning "this entry's revision": read tokens with
	// ClaimEntry.Token.
	Token    uint64    `json:"token"`
	Acquired time.Time `json:"acquired"`
	// Renewed is when this record was last written. A claim bound to a node lease is
	// written when acquired and again at about half of its server TTL (a backstop); its
	// lease is renewed in the node's record (`renewed` there).
	Renewed time.Time `json:"renewed"`
	// TTL is the lease TTL: for a bound claim, that of its node lease.
	TTL   Duration          `json:"ttl"`
	State string            `json:"state"`
	Meta  map[string]string `json:"meta"`
	// Successor, in a release record only, names the node that is to claim the worker at
	// once: the others leave it to that node for a short while.
	Successor string `json:"successor,omitempty"`
	// From, in a claim taken from a planned release (release, drain, stop, rebalance), names
	// the node that released it: placement keeps the worker off that node while others can
	// take it, so that a planned move does not bounce back.
	From string `json:"from,omitempty"`
}

// Duration is a time.Duration stored as a Go duration string ("10s").
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"10s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Encode returns the claim's JSON.
func (c Claim) Encode() []byte {
	if c.Meta == nil {
		c.Meta = map[string]string{}
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("kv: encoding claim: %v", err)) // only plain types: cannot fail
	}
	return b
}

// DecodeClaim parses a claim record. A value that is not a claim (written by hand, say)
// returns an error wrapping ErrMalformed.
func DecodeClaim(key string, b []byte) (Claim, error) {
	var c Claim
	if err := json.Unmarshal(b, &c); err != nil {
		return Claim{}, fmt.Errorf("%w: claim %q: %v", ErrMalformed, key, err)
	}
	if c.Worker != key || c.Node == "" {
		return Claim{}, fmt.Errorf("%w: claim %q: worker or node missing or wrong", ErrMalformed, key)
	}
	return c, nil
}

// DecodeRelease parses the body of a delete marker: a release record written by the owner
// after its worker stopped. ok is false for any other delete (`nats kv del`, an old
// version's release, a clear of a dead claim).
func DecodeRelease(key string, b []byte) (Claim, bool) {
	if len(b) == 0 {
		return Claim{}, false
	}
	c, err := DecodeClaim(key, b)
	if err != nil || c.State != StateReleased || c.Term == "" {
		return Claim{}, false
	}
	return c, true
}

// ClaimEntry is a claim as read from the bucket. Claim is the zero value and Err wraps
// ErrMalformed when the stored value is not a valid claim.
type ClaimEntry struct {
	Worker   string
	Revision uint64
	Claim    Claim
	Err      error
}

// Token returns the fencing token of the claim's term: the record's token, or, for the
// first record of a term written by an older version (token 0), the entry's revision.
func (e ClaimEntry) Token() uint64 {
	if e.Claim.Token != 0 {
		return e.Claim.Token
	}
	return e.Revision
}

// GetClaim reads the claim of worker from the stream leader (see GetLeader). It returns
// ErrNotFound when the worker is unowned. A malformed value is not an error of GetClaim: it
// is reported in ClaimEntry.Err.
func (b *Bucket) GetClaim(ctx context.Context, worker string) (ClaimEntry, error) {
	e, err := b.GetLeader(ctx, worker)
	if err != nil {
		return ClaimEntry{}, err
	}
	c, derr := DecodeClaim(worker, e.Value)
	return ClaimEntry{Worker: worker, Revision: e.Revision, Claim: c, Err: derr}, nil
}

// ListClaims reads every live claim.
func (b *Bucket) ListClaims(ctx context.Context) ([]ClaimEntry, error) {
	keys, err := b.Keys(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ClaimEntry, 0, len(keys))
	for _, k := range keys {
		ce, err := b.GetClaim(ctx, k)
		if err == nil {
			out = append(out, ce)
		} else if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}
	return out, nil
}
