package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetcoord/coordinator/cmd/coordinator/web"
)

// statusPage is the read-only page at / (package web), fed by the same code as
// `coordinator status`, `jobs` and `events`.
func (d *daemon) statusPage() http.Handler {
	return web.Handler(web.Source{
		Node:  d.cfg.Node.Name,
		Token: d.cfg.Node.HTTPToken, // the page shows what /status does: same guard
		Status: func(ctx context.Context) (any, error) {
			return collectStatus(ctx, d.liveStore.Load())
		},
		Jobs: func(ctx context.Context) (any, error) {
			jr := d.liveJobs.Load()
			if jr == nil {
				return nil, errors.New("jobs not started yet")
			}
			return jr.list(ctx)
		},
		Events: func(ctx context.Context, after uint64, since time.Duration) (web.Feed, error) {
			st := d.liveStore.Load()
			if st == nil {
				return nil, errors.New("store not open yet: the node is starting")
			}
			cons, err := eventConsumer(ctx, st, ">", after, since)
			if err != nil {
				return nil, err
			}
			// One continuous pull: Consumer.Next fetches one message per request, a round
			// trip each, and fell seconds behind a busy stream.
			it, err := cons.Messages()
			if err != nil {
				return nil, fmt.Errorf("reading the events stream: %w", err)
			}
			return eventFeed{it}, nil
		},
	})
}

type eventFeed struct{ it jetstream.MessagesContext }

func (f eventFeed) Stop() { f.it.Stop() }

func (f eventFeed) Next(ctx context.Context) (uint64, []byte, error) {
	for {
		msg, err := f.it.Next(jetstream.NextContext(ctx))
		switch {
		case ctx.Err() != nil:
			return 0, nil, ctx.Err()
		case errors.Is(err, jetstream.ErrMsgIteratorClosed), errors.Is(err, nats.ErrConnectionClosed):
			return 0, nil, err
		case err != nil:
			// The ordered consumer is being recreated (a stream leader moved); it resumes
			// by itself.
			select {
			case <-ctx.Done():
				return 0, nil, ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
			continue
		}
		var seq uint64
		if md, err := msg.Metadata(); err == nil {
			seq = md.Sequence.Stream
		}
		return seq, msg.Data(), nil
	}
}
