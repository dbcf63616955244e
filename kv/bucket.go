package kv

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is one coordination bucket. Every write is compare-and-set: there is no blind Put.
type Bucket struct {
	kv   jetstream.KeyValue
	js   jetstream.JetStream
	name string
	// keyPrefix is the subject prefix a key is written under, as nats.go's KeyValue.Put
	// builds it: $KV.<bucket>. behind the API prefix of a domain or imported API.
	keyPrefix string
}

// keyPrefix mirrors nats.go's kvs.Put: with a JetStream domain or an API prefix other than
// $JS.API., writes go to <prefix>$KV.<bucket>.<key>, which the server (domain) or the
// account import (prefix) maps onto the bucket's stream.
func keyPrefix(js jetstream.JetStream, bucket string) string {
	o := js.Options()
	pre := ""
	switch {
	case o.Domain != "":
		pre = "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		pre = strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	if pre == jetstream.DefaultAPIPrefix {
		pre = ""
	}
	return pre + "$KV." + bucket + "."
}

// Entry is the latest value of a key.
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
	Created  time.Time // server time of the write
}

// Name returns the bucket's name, e.g. "coord_workers".
func (b *Bucket) Name() string { return b.name }

// serverTTL rounds a lease TTL up to what a per-message TTL accepts: whole seconds, at least
// one. The server-side expiry is only the backstop; contenders time leases locally.
func serverTTL(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(ttl.Seconds())) * time.Second
}

// Get returns the live entry of key. It returns ErrNotFound when the key was never written,
// was deleted or has expired, and ErrUnavailable when JetStream did not answer.
func (b *Bucket) Get(ctx context.Context, key string) (Entry, error) {
	e, err := b.kv.Get(ctx, key)
	if err != nil {
		return Entry{}, translate("get", key, err)
	}
	return Entry{Key: key, Value: e.Value(), Revision: e.Revision(), Created: e.Created()}, nil
}

// Create writes key only if it has no live entry; the entry expires on the server after ttl
// (rounded up to whole seconds; 0 = never) unless it is written again. It returns the new
// revision, ErrExists when a live entry holds the key, ErrUnavailable when JetStream did not
// answer (the write may or may not have happened).
func (b *Bucket) Create(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	var opts []jetstream.KVCreateOpt
	if t := serverTTL(ttl); t > 0 {
		opts = append(opts, jetstream.KeyTTL(t))
	}
	rev, err := b.kv.Create(ctx, key, value, opts...)
	return rev, translate("create", key, err)
}

// Update writes key only if its last revision is rev, and gives the new entry its own ttl
// (0 = never expires). KeyValue.Update cannot carry a per-entry TTL, so this publishes to the
// key's subject with the expected-last-sequence header. It returns the new revision,
// ErrConflict when the key was written, deleted or expired since rev, ErrUnavailable when
// JetStream did not answer.
func (b *Bucket) Update(ctx context.Context, key string, value []byte, rev uint64, ttl time.Duration) (uint64, error) {
	if ttl <= 0 {
		r, err := b.kv.Update(ctx, key, value, rev)
		return r, translate("update", key, err)
	}
	msg := &nats.Msg{Subject: b.keyPrefix + key, Data: value, Header: nats.Header{}}
	ack, err := b.js.PublishMsg(ctx, msg,
		jetstream.WithExpectLastSequencePerSubject(rev),
		jetstream.WithMsgTTL(serverTTL(ttl)))
	if err != nil {
		return 0, translate("update", key, err)
	}
	return ack.Sequence, nil
}

// Delete removes key only if its last revision is rev. Watchers see it as a release. It
// returns ErrConflict when the key was written since rev, ErrUnavailable when JetStream did
// not answer.
func (b *Bucket) Delete(ctx context.Context, key string, rev uint64) error {
	if rev == 0 {
		return fmt.Errorf("kv: delete %q: a revision is required (no blind deletes)", key)
	}
	return translate("delete", key, b.kv.Delete(ctx, key, jetstream.LastRevision(rev)))
}

// Keys lists the keys with a live entry.
func (b *Bucket) Keys(ctx context.Context) ([]string, error) {
	keys, err := b.kv.Keys(ctx)
	if err != nil {
		if err == jetstream.ErrNoKeysFound {
			return nil, nil
		}
		return nil, translate("keys", b.name, err)
	}
	return keys, nil
}
