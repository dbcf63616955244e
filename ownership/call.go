package ownership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

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
)

// CallSubject is the subject worker answers on in namespace ns.
func CallSubject(ns, worker string) string { return ns + ".call." + worker }

var (
	// ErrNoOwner is returned by Call when no owner answered before ctx ended.
	ErrNoOwner = errors.New("ownership: no live owner answered")
)

// CallError is a worker's own error, as opposed to "nobody answered".
type CallError struct {
	Worker string
	Node   string
	Token  uint64
	Msg    string
}

func (e *CallError) Error() string {
	return fmt.Sprintf("worker %q on %s (token %d): %s", e.Worker, e.Node, e.Token, e.Msg)
}

// Reply is a worker's answer.
type Reply struct {
	Data  []byte
	Node  string
	Token uint64
}

// Call sends request to worker wherever it runs and returns its reply. While no node owns
// the worker (a failover) it retries with backoff until ctx ends, then returns ErrNoOwner.
// A worker error comes back as *CallError. An attempt that gets no reply within
// attemptTimeout (the owner died mid-request) is retried too, so a request may reach two
// successive owners: make requests idempotent, or check Reply.Token.
func Call(ctx context.Context, nc *nats.Conn, ns, worker string, request []byte) (Reply, error) {
	const attemptTimeout = 5 * time.Second
	subj := CallSubject(ns, worker)
	wait := 20 * time.Millisecond
	var last error
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		m, err := nc.RequestWithContext(actx, subj, request)
		cancel()
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
		if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			return Reply{}, fmt.Errorf("ownership: call %q: %w", worker, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
	if errors.Is(last, nats.ErrNoResponders) {
		return Reply{}, fmt.Errorf("%w: nothing answers on %s: no node owns %q right now, or its owner serves no calls", ErrNoOwner, subj, worker)
	}
	return Reply{}, fmt.Errorf("%w: %q did not answer in time (%v)", ErrNoOwner, worker, last)
}

// serve subscribes the worker's handler for one term and returns the unsubscribe func. A
// request is answered only while the lease is live: a paused owner that wakes up after its
// deadline drops what queued up during the pause.
func (w *worker) serve(ctx context.Context, lease *Lease) func() {
	e := w.e
	h := w.opts.handler
	if h == nil {
		return func() {}
	}
	sub, err := e.store.Conn().Subscribe(CallSubject(e.store.Namespace(), w.name), func(m *nats.Msg) {
		if !lease.live(ctx) {
			return
		}
		reply := nats.NewMsg(m.Reply)
		reply.Header.Set(HeaderToken, strconv.FormatUint(lease.Token(), 10))
		reply.Header.Set(HeaderNode, e.node)
		data, err := w.callHandler(ctx, lease, h, m.Data)
		if !lease.live(ctx) {
			return // the term ended while handling: a later owner may answer instead
		}
		if err != nil {
			reply.Header.Set(HeaderError, err.Error())
		} else {
			reply.Data = data
		}
		_ = m.RespondMsg(reply)
	})
	if err != nil {
		w.log().Error("cannot serve calls", "err", err)
		return func() {}
	}
	return func() { _ = sub.Unsubscribe() }
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
	l.stateOnce.Do(l.loadState)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state, l.stateInfo, l.stateErr
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
	l.stateOnce.Do(func() {}) // what this term saved is the last checkpoint now
	l.mu.Lock()
	l.state, l.stateInfo = append([]byte(nil), data...), StateInfo{Node: l.node, Token: l.token, Saved: now}
	l.mu.Unlock()
	e.publish(Event{Kind: KindWorker, Type: EventCheckpointed, Name: l.worker, Token: l.token})
	return nil
}

// loadState reads the last checkpoint, once per term.
func (l *Lease) loadState() {
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
		l.stateErr = fmt.Errorf("ownership: reading the last checkpoint of %q: %w", l.worker, err)
	default:
		l.state, l.stateInfo = rec.Data, StateInfo{Node: rec.Node, Token: rec.Token, Saved: rec.Saved}
	}
}
