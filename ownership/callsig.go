package ownership

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"weak"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetcoord/coordinator/kv"
)

// Why replies are signed: anyone who may publish on a caller's reply subject (any client
// of the same NATS account) could answer a call with made-up Coord-Node and Coord-Token
// headers, and a header check against the store would not help, since the claim that
// names node and token is readable. So each engine makes an ed25519 key pair when it
// starts, writes the public half into every claim it makes (meta "call_key"), and signs
// each reply over the caller's reply subject, worker, node, token, error and data. Call
// accepts a reply only when the signature verifies against the key in the worker's
// claim, whose node and token match the reply's: only a node that could write that claim
// — a coordinator node, given least privilege — can answer in a way a caller accepts.

// MetaCallKey is the claim meta key that holds the owner's public call key (ed25519,
// standard base64).
const MetaCallKey = "call_key"

// HeaderSignature carries the owner's signature of a reply (ed25519, standard base64).
const HeaderSignature = "Coord-Signature"

// ErrUnverifiedReply is returned by Call when replies came but none was signed by the
// owner that the workers bucket names: someone else answered on the worker's subject.
var ErrUnverifiedReply = errors.New("ownership: reply not signed by the worker's owner")

type callKey struct {
	private ed25519.PrivateKey
	public  string
}

func newCallKey() (callKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return callKey{}, fmt.Errorf("ownership: making the call key: %w", err)
	}
	return callKey{private: priv, public: base64.StdEncoding.EncodeToString(pub)}, nil
}

func (k callKey) sign(replySubject, worker, node string, token uint64, errMsg string, data []byte) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(k.private, replyDigest(replySubject, worker, node, token, errMsg, data)))
}

// replyDigest is what a signature covers. Fields are length-prefixed so that no two
// different replies hash alike; the reply subject (the caller's unique inbox) keeps a
// genuine reply from being replayed to another request.
func replyDigest(replySubject, worker, node string, token uint64, errMsg string, data []byte) []byte {
	h := sha256.New()
	h.Write([]byte("coordinator call reply v1\x00"))
	for _, f := range [][]byte{[]byte(replySubject), []byte(worker), []byte(node), []byte(errMsg), data} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write(f)
	}
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], token)
	h.Write(t[:])
	return h.Sum(nil)
}

// callVerifier checks replies against the workers bucket of one namespace, read through
// one connection. It remembers the last verified key of each worker, so that a call to a
// worker whose owner did not change costs no extra read.
type callVerifier struct {
	ns string
	js jetstream.JetStream

	mu     sync.Mutex
	bucket jetstream.KeyValue
	known  map[string]ownerKey // by worker
}

type ownerKey struct {
	node  string
	token uint64
	pub   ed25519.PublicKey
}

type verifierKey struct {
	nc  weak.Pointer[nats.Conn]
	ns  string
	api string // the JetStream domain or API prefix the claims are read through
}

// verifiers are shared by the calls on one connection; a closed and collected connection
// leaves only its small entry behind until the map is next pruned.
var (
	verifiersMu sync.Mutex
	verifiers   = map[verifierKey]*callVerifier{}
)

func verifierFor(nc *nats.Conn, ns string, js jetstream.JetStream) (*callVerifier, error) {
	k := verifierKey{nc: weak.Make(nc), ns: ns}
	if js != nil {
		o := js.Options()
		k.api = o.Domain + "|" + o.APIPrefix
	}
	verifiersMu.Lock()
	defer verifiersMu.Unlock()
	if v, ok := verifiers[k]; ok {
		return v, nil
	}
	for old := range verifiers {
		if old.nc.Value() == nil {
			delete(verifiers, old)
		}
	}
	if js == nil {
		var err error
		if js, err = jetstream.New(nc); err != nil {
			return nil, fmt.Errorf("ownership: call: %w", err)
		}
	}
	v := &callVerifier{ns: ns, js: js, known: map[string]ownerKey{}}
	verifiers[k] = v
	return v, nil
}

func (v *callVerifier) verify(ctx context.Context, worker string, m *nats.Msg) error {
	node := m.Header.Get(HeaderNode)
	token, err := strconv.ParseUint(m.Header.Get(HeaderToken), 10, 64)
	if err != nil || node == "" {
		return fmt.Errorf("reply without %s/%s", HeaderNode, HeaderToken)
	}
	sig, err := base64.StdEncoding.DecodeString(m.Header.Get(HeaderSignature))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("reply from %q without a valid %s", node, HeaderSignature)
	}
	digest := replyDigest(m.Subject, worker, node, token, m.Header.Get(HeaderError), m.Data)

	v.mu.Lock()
	k, ok := v.known[worker]
	v.mu.Unlock()
	if !ok || k.node != node || k.token != token {
		if k, err = v.lookup(ctx, worker); err != nil {
			return err
		}
		if k.node != node || k.token != token {
			return fmt.Errorf("reply claims %q token %d but the workers bucket says %q token %d", node, token, k.node, k.token)
		}
	}
	if !ed25519.Verify(k.pub, digest, sig) {
		return fmt.Errorf("reply from %q token %d: signature does not match the owner's key", node, token)
	}
	return nil
}

// lookup reads the worker's claim (a read of the stream, so the latest write) and
// remembers its owner's key.
func (v *callVerifier) lookup(ctx context.Context, worker string) (ownerKey, error) {
	v.mu.Lock()
	b := v.bucket
	v.mu.Unlock()
	if b == nil {
		var err error
		if b, err = v.js.KeyValue(ctx, v.ns+"_workers"); err != nil {
			return ownerKey{}, fmt.Errorf("reading the owner of %q to verify its reply: %w (callers need read access to the %s_workers bucket)", worker, err, v.ns)
		}
		v.mu.Lock()
		v.bucket = b
		v.mu.Unlock()
	}
	e, err := b.Get(ctx, worker)
	if err != nil {
		return ownerKey{}, fmt.Errorf("reading the owner of %q to verify its reply: %w", worker, err)
	}
	c, err := kv.DecodeClaim(worker, e.Value())
	if err != nil {
		return ownerKey{}, err
	}
	token := c.Token
	if token == 0 {
		token = e.Revision() // an older version's first record: its own revision
	}
	pub, err := base64.StdEncoding.DecodeString(c.Meta[MetaCallKey])
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return ownerKey{}, fmt.Errorf("the claim of %q has no call key (an owner older than this caller?)", worker)
	}
	k := ownerKey{node: c.Node, token: token, pub: pub}
	v.mu.Lock()
	v.known[worker] = k
	v.mu.Unlock()
	return k, nil
}
