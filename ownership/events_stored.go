package ownership

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// PublishStored sends ev as Publish does, but through JetStream, and again until the events
// stream has stored it or ctx ends. An event published as a plain message while a new
// cluster forms — the events stream just created, its leader not yet elected — is lost:
// node.joined went missing for 2 of 3 nodes at bootstrap (issue 14). The retries carry the
// same id, which the stream de-duplicates.
func (p *Publisher) PublishStored(ctx context.Context, ev Event) error {
	ev.ID = nuid.Next()
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	ev.Cluster = p.ns
	if ev.Node == "" {
		ev.Node = p.node
	}
	b, _ := json.Marshal(ev)
	js, err := jetstream.New(p.nc)
	if err != nil {
		return err
	}
	wait := 100 * time.Millisecond
	for {
		msg := &nats.Msg{Subject: ev.Subject(), Data: b, Header: nats.Header{}}
		msg.Header.Set(nats.MsgIdHdr, ev.ID)
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.PublishMsg(actx, msg)
		cancel()
		if err == nil {
			p.metrics.EventPublished(ev.Kind, ev.Type)
			return nil
		}
		p.log.Debug("event not stored yet; retrying", "subject", msg.Subject, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// publishStored publishes ev with PublishStored in the background, until the engine stops.
func (e *Engine) publishStored(ev Event) {
	if e.events == nil {
		return
	}
	e.goFunc(func() { _ = e.events.PublishStored(e.ctx, ev) })
}
