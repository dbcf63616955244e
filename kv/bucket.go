package kv

import (
	"context"
	"encoding/json"
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
	nc   *nats.Conn
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

// apiPrefix is the JetStream API prefix requests go to: $JS.API., or that of a domain or an
// imported API.
func apiPrefix(js jetstream.JetStream) string {
	o := js.Options()
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	return jetstream.DefaultAPIPrefix
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

// Get returns the live entry of key. Any replica may answer (a direct get), a lagging
// follower included: use it where a stale answer only delays, and GetLeader where the
// answer decides something. It returns ErrNotFound when the key was never written, was
// deleted or has expired, and ErrUnavailable when JetStream did not answer.
func (b *Bucket) Get(ctx context.Context, key string) (Entry, error) {
	e, err := b.kv.Get(ctx, key)
	if err != nil {
		return Entry{}, translate("get", key, err)
	}
	return Entry{Key: key, Value: e.Value(), Revision: e.Revision(), Created: e.Created()}, nil
}

// GetLeader is Get answered by the stream leader (STREAM.MSG.GET), never by a follower that
// may lag. Reads that decide something — whether a write of ours landed, which checkpoint
// the next owner starts from — use it. While the stream has no leader it fails with
// ErrUnavailable where Get might still answer. It also returns ErrBucketNotFound when the
// bucket is gone.
func (b *Bucket) GetLeader(ctx context.Context, key string) (Entry, error) {
	m, err := b.lastMsg(ctx, key)
	if err != nil {
		return Entry{}, translate("get", key, err)
	}
	if op := opOf(m.Header); op != OpPut {
		return Entry{}, translate("get", key, jetstream.ErrKeyDeleted)
	}
	return Entry{Key: key, Value: m.Data, Revision: m.Sequence, Created: m.Time}, nil
}

// Latest returns the last change the stream leader keeps for key, markers included: an
// OpPut with its value, an OpDelete with the delete's body (see Release), an OpExpire for
// a purge or the server's expiry marker. It returns ErrNotFound when nothing is kept for
// key (never written, or its markers have gone), and otherwise errors as Get.
func (b *Bucket) Latest(ctx context.Context, key string) (Change, error) {
	m, err := b.lastMsg(ctx, key)
	if err != nil {
		return Change{}, translate("get", key, err)
	}
	c := Change{Key: key, Revision: m.Sequence, Op: opOf(m.Header), Created: m.Time}
	if c.Op != OpExpire {
		c.Value = m.Data
	}
	return c, nil
}

// LatestDirect is Latest answered by any replica (a direct get): cheap, and possibly
// stale. Use it where the answer only leads to a compare-and-set write, which the leader
// checks anyway.
func (b *Bucket) LatestDirect(ctx context.Context, key string) (Change, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	subj := "$KV." + b.name + "." + key
	m, err := b.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET.KV_"+b.name+"."+subj, nil)
	if err != nil {
		return Change{}, translate("get", key, err)
	}
	switch m.Header.Get("Status") {
	case "":
	case "404":
		return Change{}, translate("get", key, jetstream.ErrKeyNotFound)
	default:
		return Change{}, translate("get", key, fmt.Errorf("direct get: status %s %s", m.Header.Get("Status"), m.Header.Get("Description")))
	}
	var rev uint64
	if _, err := fmt.Sscan(m.Header.Get("Nats-Sequence"), &rev); err != nil {
		return Change{}, translate("get", key, fmt.Errorf("direct get: no sequence: %w", err))
	}
	created, _ := time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
	c := Change{Key: key, Revision: rev, Op: opOf(m.Header), Created: created}
	if c.Op != OpExpire {
		c.Value = m.Data
	}
	return c, nil
}

// leaderMsg is a message as STREAM.MSG.GET returns it.
type leaderMsg struct {
	Sequence uint64
	Header   nats.Header
	Data     []byte
	Time     time.Time
}

func (b *Bucket) lastMsg(ctx context.Context, key string) (leaderMsg, error) {
	req, err := json.Marshal(struct {
		LastBySubject string `json:"last_by_subj"`
	}{"$KV." + b.name + "." + key})
	if err != nil {
		return leaderMsg{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	reply, err := b.nc.RequestWithContext(ctx, apiPrefix(b.js)+"STREAM.MSG.GET.KV_"+b.name, req)
	if err != nil {
		return leaderMsg{}, err
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Sequence uint64    `json:"seq"`
			Header   []byte    `json:"hdrs"`
			Data     []byte    `json:"data"`
			Time     time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return leaderMsg{}, fmt.Errorf("decoding the leader's answer: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return leaderMsg{}, jetstream.ErrKeyNotFound
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeStreamNotFound:
		return leaderMsg{}, jetstream.ErrBucketNotFound
	case resp.Error != nil:
		return leaderMsg{}, resp.Error
	case resp.Message == nil:
		return leaderMsg{}, jetstream.ErrInvalidJetStreamResponse
	}
	m := leaderMsg{Sequence: resp.Message.Sequence, Data: resp.Message.Data, Time: resp.Message.Time}
	if len(resp.Message.Header) > 0 {
		if m.Header, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return leaderMsg{}, fmt.Errorf("decoding headers: %w", err)
		}
	}
	return m, nil
}

// opOf reads what a stored message did to its key, as nats.go's KV does.
func opOf(h nats.Header) Op {
	switch h.Get("KV-Operation") {
	case "DEL":
		return OpDelete
	case "PURGE":
		return OpExpire
	}
	switch h.Get(jetstream.MarkerReasonHeader) {
	case "MaxAge", "Purge":
		return OpExpire
	case "Remove":
		return OpDelete
	}
	return OpPut
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
// (0 = never expires). rev is the revision of the key's last change, an entry or a marker
// (delete, purge, expiry), or 0 when the stream keeps nothing for the key. KeyValue.Update
// cannot carry a per-entry TTL, so this publishes to the key's subject with the
// expected-last-sequence header. It returns the new revision, ErrConflict when the key was
// written, deleted or expired since rev, ErrUnavailable when JetStream did not answer.
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

// Release deletes key only if its last revision is rev, leaving body as the delete
// marker's value: watchers see an OpDelete whose Value is body. The owner of a claim
// releases with a StateReleased record once its worker stopped, which tells contenders
// that they need not wait for the lease to run out; an empty body is a plain delete. It
// returns the marker's revision; errors as for Delete.
func (b *Bucket) Release(ctx context.Context, key string, rev uint64, body []byte) (uint64, error) {
	if rev == 0 {
		return 0, fmt.Errorf("kv: release %q: a revision is required (no blind deletes)", key)
	}
	msg := &nats.Msg{Subject: b.keyPrefix + key, Data: body, Header: nats.Header{}}
	msg.Header.Set("KV-Operation", "DEL")
	ack, err := b.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(rev))
	if err != nil {
		return 0, translate("release", key, err)
	}
	return ack.Sequence, nil
}

// Tombstone writes a delete marker with body on key only if the key's last change is at
// rev, 0 meaning that the stream keeps nothing for it: a compare-and-set that proves, when
// it lands, that nothing was written to key since rev. It returns the marker's revision,
// ErrConflict when the key changed since rev, ErrUnavailable when JetStream did not answer.
func (b *Bucket) Tombstone(ctx context.Context, key string, rev uint64, body []byte) (uint64, error) {
	msg := &nats.Msg{Subject: b.keyPrefix + key, Data: body, Header: nats.Header{}}
	msg.Header.Set("KV-Operation", "DEL")
	ack, err := b.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(rev))
	if err != nil {
		return 0, translate("tombstone", key, err)
	}
	return ack.Sequence, nil
}

// LastRevision returns the highest revision the bucket has written: any later write gets
// a larger one. An empty bucket created above a floor (see Store.EnsureWorkers) answers
// the floor. It asks the stream leader (STREAM.INFO), through the domain or API prefix the
// store was opened with; ErrUnavailable when JetStream did not answer.
func (b *Bucket) LastRevision(ctx context.Context) (uint64, error) {
	st, err := b.js.Stream(ctx, "KV_"+b.name)
	if err != nil {
		return 0, translate("stream info", b.name, err)
	}
	s := st.CachedInfo().State
	last := s.LastSeq
	if s.FirstSeq > 0 {
		last = max(last, s.FirstSeq-1)
	}
	return last, nil
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
