package kv

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Op says what a change did to a key.
type Op int

const (
	// OpPut is a new value.
	OpPut Op = iota
	// OpDelete is a delete (a release, for a claim).
	OpDelete
	// OpExpire is the server's expiry marker (a TTL ran out) or a purge.
	OpExpire
)

func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpExpire:
		return "expire"
	}
	return "unknown"
}

// Change is one write seen by a watcher.
type Change struct {
	Key      string
	Value    []byte // for OpDelete the delete marker's body (see Bucket.Release); nil for OpExpire
	Revision uint64
	Op       Op
	Created  time.Time // server time of the write
}

// Watcher follows a bucket. It first delivers the latest entry of every key (including
// delete and expiry markers still kept), then closes Synced, then delivers changes as they
// happen.
//
// A reader that falls behind stalls the watch: changes are never dropped, they queue on the
// server. Changes is closed after Stop, after the context given to Watch ends, or when the
// underlying subscription ends; a reader that sees it closed without calling Stop should
// watch again.
type Watcher struct {
	changes chan Change
	synced  chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once
}

// Watch starts a watcher on keys (subject wildcards allowed; none = all keys). It returns
// ErrUnavailable when JetStream did not answer.
func (b *Bucket) Watch(ctx context.Context, keys ...string) (*Watcher, error) {
	wctx, cancel := context.WithCancel(ctx)
	var kw jetstream.KeyWatcher
	var err error
	if len(keys) == 0 {
		kw, err = b.kv.WatchAll(wctx)
	} else {
		kw, err = b.kv.WatchFiltered(wctx, keys)
	}
	if err != nil {
		cancel()
		return nil, translate("watch", b.name, err)
	}
	w := &Watcher{
		changes: make(chan Change, 64),
		synced:  make(chan struct{}),
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	go w.run(wctx, kw)
	return w, nil
}

func (w *Watcher) run(ctx context.Context, kw jetstream.KeyWatcher) {
	defer close(w.done)
	defer close(w.changes)
	defer kw.Stop() //nolint:errcheck // nothing to do about a failed unsubscribe
	synced := false
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return
		case e, ok = <-kw.Updates():
			if !ok {
				return
			}
		}
		if e == nil {
			if !synced {
				synced = true
				close(w.synced)
			}
			continue
		}
		c := Change{Key: e.Key(), Revision: e.Revision(), Created: e.Created()}
		switch e.Operation() {
		case jetstream.KeyValuePut:
			c.Op, c.Value = OpPut, e.Value()
		case jetstream.KeyValueDelete:
			c.Op, c.Value = OpDelete, e.Value()
		default:
			c.Op = OpExpire
		}
		select {
		case w.changes <- c:
		case <-ctx.Done():
			return
		}
	}
}

// Changes returns the channel of changes; see Watcher for when it closes.
func (w *Watcher) Changes() <-chan Change { return w.changes }

// Synced is closed once the initial entries have been delivered.
func (w *Watcher) Synced() <-chan struct{} { return w.synced }

// Stop ends the watch and waits for its goroutine. Safe to call more than once.
func (w *Watcher) Stop() {
	w.once.Do(w.cancel)
	<-w.done
}
