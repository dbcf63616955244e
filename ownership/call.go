package ownership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetcoord/coordinator/kv"
)

// Handler answers requests sent to a worker on <ns>.call.<worker>. It runs only while this
// node owns the worker, with the lease's context; its reply (or error) goes back to the
// caller with the fencing token in the Coord-Token header.
type Handler func(ctx context.Context, lease *Lease, request []byte) ([]byte, error)

// WithHandler makes the worker reachable: while this node owns it, requests on
// <ns>.call.<worker> go to h. Any NATS client can call: `nats req coord.call.billing '…'`.
func WithHandler(h Handler) WorkerOption {
	return func(o *workerOptions) { o.handler = h }
}

// JSONHandler wraps h so that a request that is not JSON gets a clear error instead of
// reaching h.
func JSONHandler(h Handler) Handler {
	return func(ctx context.Context, lease *Lease, req []byte) ([]byte, error) {
		if !json.Valid(req) {
			return nil, fmt.Errorf("request to %q is not JSON (got %d bytes starting %q): send a JSON document", lease.Worker(), len(req), prefix(req, 20))
		}
		return h(ctx, lease, req)
	}
}

func prefix(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// Reply headers.
const (
	HeaderToken = "Coord-Token"
	HeaderNode  = "Coord-Node"
	HeaderError = "Coord-Error"
	// HeaderTimeout, on a request, is how long the caller waits for the reply (a Go
	// duration, e.g. "9.5s"). The owner does not start a request whose caller has given up,
	// and ends the handler's context when the caller stops waiting. Relative, so that clocks
	// of different machines do not matter.
	HeaderTimeout = "Coord-Timeout"
	// HeaderAccept, on a request, asks the owner to confirm receipt at once with an empty
	// message carrying HeaderAccepted, before the reply. Call uses it to tell an owner that
	// died with the request in flight (retry) from a slow one (wait). Plain requests
	// (`nats req`) get the reply only.
	HeaderAccept   = "Coord-Accept"
	HeaderAccepted = "Coord-Accepted"
)

// MaxConcurrentCalls is how many requests to one worker its owner handles at once; more
// wait for a free slot (and are dropped if their caller gives up meanwhile).
const MaxConcurrentCalls = 16

// DefaultCallTimeout bounds a Call whose context has no deadline.
const DefaultCallTimeout = 30 * time.Second

// CallOption configures Call.
type CallOption func(*callOptions)

type callOptions struct {
	js jetstream.JetStream
}

// WithCallJetStream reads the workers bucket, to verify replies, through js (for a
// JetStream domain or API prefix). Default: jetstream.New on the call's connection.
func WithCallJetStream(js jetstream.JetStream) CallOption {
	return func(o *callOptions) { o.js = js }
}

// CallSubject is the subject worker answers on in namespace ns.
func CallSubject(ns, worker string) string { return ns + ".call." + worker }

var (
	// ErrNoOwner is returned by Call when no owner answered before ctx ended, or at once
	// when no node owns or registers the worker.
	ErrNoOwner = errors.New("ownership: no live owner answered")
	// ErrNoHandler is matched (errors.Is) by the *CallError of an owner that serves no
	// calls: the worker was registered without WithHandler.
	ErrNoHandler = errors.New("ownership: worker serves no calls")
)

// CallError is a worker's own error, as opposed to "nobody answered".
type CallError struct {
	Worker string
	Node   string
	Token  uint64
	Msg    string
	// NoHandler: the owner serves no calls for this worker (errors.Is(err, ErrNoHandler)).
	NoHandler bool
}

func (e *CallError) Error() string {
	return fmt.Sprintf("worker %q on %s (token %d): %s", e.Worker, e.Node, e.Token, e.Msg)
}

// Is makes errors.Is(err, ErrNoHandler) true for an owner without a handler.
func (e *CallError) Is(target error) bool { return target == ErrNoHandler && e.NoHandler }

// Reply is a worker's answer.
type Reply struct {
	Data  []byte
	Node  string
	Token uint64
}

// Call sends request to worker wherever it runs and returns its reply. While no node owns
// the worker (a failover) it retries with backoff until ctx ends, then returns ErrNoOwner;
// when no node owns or registers the worker at all it returns ErrNoOwner at once. A worker
// error comes back as *CallError (errors.Is(err, ErrNoHandler) when the owner serves no
// calls). The owner learns ctx's deadline (HeaderTimeout): it does not run a request whose
// caller has given up, and a request is sent to an owner once, never again after a timeout.
//
// Only the node that holds the worker's lease can answer in a way Call accepts: a reply
// must be signed with the key its claim names (see MetaCallKey), so the caller needs read
// access to the <ns>_workers bucket; other replies are ignored, and if only those came
// the error wraps ErrUnverifiedReply. opts may name the JetStream to read it through (a
// domain or API prefix).
func Call(ctx context.Context, nc *nats.Conn, ns, worker string, request []byte, opts ...CallOption) (Reply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	var o callOptions
	for _, opt := range opts {
		opt(&o)
	}
	v, err := verifierFor(nc, ns, o.js)
	if err != nil {
		return Reply{}, err
	}
	subj := CallSubject(ns, worker)
	wait := 20 * time.Millisecond
	checked := false
	var last error
	for {
		m, err := v.send(ctx, nc, subj, worker, request)
		if err == nil {
			tok, _ := strconv.ParseUint(m.Header.Get(HeaderToken), 10, 64)
			r := Reply{Data: m.Data, Node: m.Header.Get(HeaderNode), Token: tok}
			if msg := m.Header.Get(HeaderError); msg != "" {
				return r, &CallError{Worker: worker, Node: r.Node, Token: tok, Msg: msg}
			}
			return r, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, errNotAccepted) {
			// An owner that died with the request in flight (its subscription outlived it
			// for a moment): nothing ran, so trying again is safe.
		} else if !errors.Is(err, nats.ErrNoResponders) {
			return Reply{}, fmt.Errorf("ownership: call %q: %w", worker, err)
		}
		if !checked {
			checked = true
			if err := diagnose(ctx, nc, ns, worker); err != nil {
				return Reply{}, err
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
	if errors.Is(last, nats.ErrNoResponders) {
		return Reply{}, fmt.Errorf("%w: nothing answers on %s: no node owns %q right now", ErrNoOwner, subj, worker)
	}
	if errors.Is(last, ErrUnverifiedReply) {
		return Reply{}, fmt.Errorf("%w: %q: %w", ErrNoOwner, worker, last)
	}
	return Reply{}, fmt.Errorf("%w: %q did not answer in time (%v)", ErrNoOwner, worker, last)
}

// acceptTimeout bounds the wait for an owner to accept a request (HeaderAccepted). An owner
// accepts as soon as the request arrives, before it runs; silence means it is gone.
const acceptTimeout = 2 * time.Second

var errNotAccepted = errors.New("ownership: the owner did not accept the request")

// send sends one request and waits for the owner to accept it (within acceptTimeout),
// then for its reply (until ctx ends). A request the owner accepted is never sent again, so
// a slow handler is not run twice.
func (v *callVerifier) send(ctx context.Context, nc *nats.Conn, subj, worker string, data []byte) (*nats.Msg, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	msg := nats.NewMsg(subj)
	msg.Reply = inbox
	msg.Data = data
	msg.Header.Set(HeaderAccept, "true")
	if dl, ok := ctx.Deadline(); ok {
		msg.Header.Set(HeaderTimeout, time.Until(dl).String())
	}
	if err := nc.PublishMsg(msg); err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, acceptTimeout)
	defer cancel()
	accepted := false
	var rejected error
	for {
		wctx := ctx
		if !accepted {
			wctx = actx
		}
		m, err := sub.NextMsgWithContext(wctx)
		if err != nil {
			if rejected != nil {
				return nil, fmt.Errorf("%w (%v): %w", ErrUnverifiedReply, rejected, err)
			}
			if !accepted && ctx.Err() == nil {
				return nil, errNotAccepted
			}
			return nil, err
		}
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			return nil, nats.ErrNoResponders
		}
		if m.Header.Get(HeaderAccepted) == "true" {
			// Unsigned: a forged one can only make the caller wait for a reply longer.
			accepted = true
			continue
		}
		if err := v.verify(ctx, worker, m); err != nil {
			rejected = err // the owner's own reply may still come
			continue
		}
		return m, nil
	}
}

// diagnose says why nothing answers for worker, when it can tell: no node owns or
// registers it (ErrNoOwner), or its owner serves no calls (*CallError, ErrNoHandler). It
// returns nil when an owner may answer soon (a failover, a claim in progress) or a node
// cannot tell.
func diagnose(ctx context.Context, nc *nats.Conn, ns, worker string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := kv.Open(ctx, nc, kv.Options{Namespace: ns, BindOnly: true})
	if err != nil {
		if errors.Is(err, kv.ErrUnavailable) {
			return nil
		}
		return fmt.Errorf("%w: no node owns %q: namespace %q has no buckets (%v): is the namespace right?", ErrNoOwner, worker, ns, err)
	}
	ce, err := st.Workers.GetClaim(ctx, worker)
	switch {
	case err == nil && ce.Err == nil:
		// An owner that serves no calls, or one that is gone (then the claim is taken over).
		a := readRuntimes(ctx, nc, ns, []string{ce.Claim.Node}, time.Second)[ce.Claim.Node]
		if rt, ok := a.rt.Worker(worker); a.err == nil && ok && rt.NoCalls {
			return &CallError{Worker: worker, Node: ce.Claim.Node, Token: ce.Token(), NoHandler: true,
				Msg: fmt.Sprintf("worker %q serves no calls: it has no call handler (set call: in its config, or register it with ownership.WithHandler)", worker)}
		}
		return nil
	case !errors.Is(err, kv.ErrNotFound):
		return nil
	}
	nodes, err := st.Nodes.Keys(ctx)
	if err != nil {
		return nil
	}
	if len(nodes) == 0 {
		return fmt.Errorf("%w: no node owns %q: no live node in namespace %s", ErrNoOwner, worker, ns)
	}
	for _, a := range readRuntimes(ctx, nc, ns, nodes, time.Second) {
		if a.err != nil {
			return nil // a node that cannot tell (an older one, or slow)
		}
		if _, ok := a.rt.Worker(worker); ok {
			return nil // registered: a node claims it soon
		}
	}
	return fmt.Errorf("%w: no node owns %q: it has no claim and none of the %d live nodes registers it: is the name right? ('coordinator status' lists the workers)",
		ErrNoOwner, worker, len(nodes))
}

// serve subscribes the worker's handler for one term and returns the unsubscribe func. A
// request is answered only while the lease is live: a paused owner that wakes up after its
// deadline drops what queued up during the pause. Up to MaxConcurrentCalls requests run at
// once.
func (w *worker) serve(ctx context.Context, lease *Lease) func() {
	e := w.e
	h := w.opts.handler
	if h == nil {
		// No subscription (it would cost one per owned worker): a caller that finds no
		// responder asks the owner's runtime, which says the worker serves no calls.
		return func() {}
	}
	nc := e.store.Conn()
	hctx, hcancel := context.WithCancel(ctx)
	sem := make(chan struct{}, MaxConcurrentCalls)
	// wg counts running handlers; closed (under mu) stops new ones from joining once the
	// stop func waits: Unsubscribe does not wait for a callback already running.
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		closed bool
	)
	sub, err := nc.Subscribe(CallSubject(e.store.Namespace(), w.name), func(m *nats.Msg) {
		received := time.Now()
		if !lease.live(ctx) {
			return
		}
		reply := nats.NewMsg(m.Reply)
		reply.Header.Set(HeaderToken, strconv.FormatUint(lease.Token(), 10))
		reply.Header.Set(HeaderNode, e.node)
		if m.Header.Get(HeaderAccept) == "true" {
			ack := nats.NewMsg(m.Reply)
			ack.Header.Set(HeaderAccepted, "true")
			_ = m.RespondMsg(ack)
		}
		deadline := time.Time{}
		if d, err := time.ParseDuration(m.Header.Get(HeaderTimeout)); err == nil && d > 0 {
			// The request and its reply spend time in transit, which the relative timeout
			// does not count: end a tenth early (at most 1s), so that the caller is still
			// waiting when the owner gives up, and the reply can still reach it.
			deadline = received.Add(d - min(d/10, time.Second))
		}
		var expired <-chan time.Time
		if !deadline.IsZero() {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			expired = t.C
		}
		select {
		case sem <- struct{}{}:
		case <-expired:
			w.log().Warn("call dropped: its caller gave up while it waited for a free slot", "limit", MaxConcurrentCalls)
			return
		case <-hctx.Done():
			return
		}
		mu.Lock()
		if closed {
			mu.Unlock()
			<-sem
			return
		}
		wg.Add(1)
		mu.Unlock()
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cctx, cancel := hctx, context.CancelFunc(func() {})
			if !deadline.IsZero() {
				if time.Until(deadline) <= 0 {
					w.log().Warn("call dropped: its caller gave up before it could start")
					return
				}
				cctx, cancel = context.WithDeadline(hctx, deadline)
			}
			defer cancel()
			data, err := w.callHandler(cctx, lease, h, m.Data)
			if !lease.live(ctx) {
				return // the term ended while handling: a later owner may answer instead
			}
			if err != nil {
				reply.Header.Set(HeaderError, err.Error())
			} else {
				reply.Data = data
			}
			if size, limit := msgSize(reply), nc.MaxPayload(); limit > 0 && size > limit {
				w.log().Error("call reply too large for NATS; the caller gets an error instead", "bytes", size, "max_payload", limit)
				reply.Data = nil
				reply.Header.Set(HeaderError, fmt.Sprintf("reply of %d bytes exceeds the NATS max payload of %d bytes: "+
					"return less (or store the data elsewhere and reply with a reference)", size, limit))
			}
			w.signReply(m, reply, lease)
			if err := m.RespondMsg(reply); err != nil {
				w.log().Error("cannot send call reply", "err", err)
			}
		}()
	})
	if err != nil {
		hcancel()
		w.log().Error("cannot serve calls", "err", err)
		return func() {}
	}
	return func() {
		_ = sub.Unsubscribe()
		hcancel()
		mu.Lock()
		closed = true
		mu.Unlock()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		t := time.NewTimer(e.cfg.FenceGrace + time.Second)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			w.log().Error("a call handler did not return after its term ended", "grace", e.cfg.FenceGrace+time.Second)
		}
	}
}

// msgSize is the size of m on the wire as the server counts it against max_payload:
// headers and data.
func msgSize(m *nats.Msg) int64 {
	n := len(m.Data)
	if len(m.Header) > 0 {
		n += len("NATS/1.0\r\n\r\n")
		for k, vs := range m.Header {
			for _, v := range vs {
				n += len(k) + len(v) + 4
			}
		}
	}
	return int64(n)
}

func (w *worker) callHandler(ctx context.Context, lease *Lease, h Handler, req []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h(ctx, lease, req)
}

// StateInfo describes a checkpoint.
type StateInfo struct {
	Node  string
	Token uint64
	Saved time.Time
}

// State returns the last checkpoint of the worker — saved by an earlier owner before a
// planned move or a crash, or by this one. nil if there is none. The first call of a term
// reads it from the stream leader (a follower might hand over an older checkpoint); terms
// that never ask pay nothing.
func (l *Lease) State() ([]byte, StateInfo, error) {
	cp := l.checkpoint()
	cp.once.Do(func() { l.loadState(cp) })
	l.mu.Lock()
	defer l.mu.Unlock()
	return cp.data, cp.info, cp.err
}

// SaveState checkpoints data (at most kv.MaxState bytes) for the next owner. It is refused
// with kv.ErrStaleToken when a newer term already saved state, and with ErrLeaseExpired when
// this lease is no longer live.
func (l *Lease) SaveState(ctx context.Context, data []byte) error {
	if l.e == nil {
		return errors.New("ownership: lease has no engine")
	}
	if !l.live(l.ctx) {
		return fmt.Errorf("%w: %q: not saved", ErrLeaseExpired, l.worker)
	}
	e := l.e
	now := e.cfg.Clock.Now().UTC()
	rec := kv.StateRecord{Worker: l.worker, Node: l.node, Token: l.token, Saved: now, Data: data}
	if err := e.store.State.SaveState(ctx, rec); err != nil {
		return err
	}
	if !l.live(l.ctx) {
		// The write raced the end of the term. It is fenced by the token for later owners
		// that saved; report it so the worker does not count on it.
		return fmt.Errorf("%w: %q: saved as the lease ended", ErrLeaseExpired, l.worker)
	}
	cp := l.checkpoint()
	cp.once.Do(func() {}) // what this term saved is the last checkpoint now
	l.mu.Lock()
	cp.data, cp.info = append([]byte(nil), data...), StateInfo{Node: l.node, Token: l.token, Saved: now}
	l.mu.Unlock()
	e.publish(Event{Kind: KindWorker, Type: EventCheckpointed, Name: l.worker, Token: l.token})
	return nil
}

// loadState reads the last checkpoint into cp, once per term.
func (l *Lease) loadState(cp *checkpoint) {
	e := l.e
	if e == nil {
		return
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RenewInterval)
	defer cancel()
	rec, _, err := e.store.State.GetState(ctx, l.worker)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case errors.Is(err, kv.ErrNotFound):
	case err != nil:
		cp.err = fmt.Errorf("ownership: reading the last checkpoint of %q: %w", l.worker, err)
	default:
		cp.data, cp.info = rec.Data, StateInfo{Node: rec.Node, Token: rec.Token, Saved: rec.Saved}
	}
}

// signReply signs reply to request m with this engine's call key (see callsig.go).
func (w *worker) signReply(m, reply *nats.Msg, lease *Lease) {
	reply.Header.Set(HeaderSignature, w.e.callKey.sign(m.Reply, w.name, w.e.node, lease.Token(), reply.Header.Get(HeaderError), reply.Data))
}
