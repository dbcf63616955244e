package ownership

import (
	"encoding/json"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/jetcoord/coordinator/kv"
)

// Event kinds.
const (
	KindWorker = "worker"
	KindNode   = "node"
	KindJob    = "job"
)

// Worker event types.
const (
	EventClaimed      = "claimed"      // this node began an ownership term
	EventStarted      = "started"      // the worker function or command started
	EventStopped      = "stopped"      // it returned or was stopped on purpose
	EventReleased     = "released"     // the claim was deleted on purpose
	EventExpired      = "expired"      // a claim ran out without renewal and was cleared by the next owner
	EventLost         = "lost"         // the owner lost its lease (deadline passed or claim taken)
	EventFailed       = "failed"       // the worker returned an error or panicked
	EventMoved        = "moved"        // the worker was handed to another node
	EventCheckpointed = "checkpointed" // the owner saved a state checkpoint
)

// Event is the JSON payload published on <ns>.events.<kind>.<name>.<type> and kept in the
// <NS>_EVENTS stream.
type Event struct {
	ID      string    `json:"id"`
	Type    string    `json:"type"`
	Kind    string    `json:"kind"`
	Time    time.Time `json:"time"`
	Cluster string    `json:"cluster"`
	Node    string    `json:"node"`
	Name    string    `json:"name"`
	Token   uint64    `json:"token,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	From    string    `json:"from,omitempty"`
	To      string    `json:"to,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// Subject returns the subject the event is published on.
func (e Event) Subject() string {
	return kv.EventsSubject(e.Cluster) + "." + e.Kind + "." + e.Name + "." + e.Type
}

// Publisher publishes lifecycle events of one node. Publishing never blocks the lease engine:
// events go out as core NATS messages that the events stream captures; a message published
// while the connection is down is buffered by the client and sent on reconnect.
type Publisher struct {
	nc      *nats.Conn
	ns      string
	node    string
	log     *slog.Logger
	metrics Metrics
}

// NewPublisher returns a publisher for node in namespace ns.
func NewPublisher(nc *nats.Conn, ns, node string, log *slog.Logger, m Metrics) *Publisher {
	if m == nil {
		m = NopMetrics{}
	}
	return &Publisher{nc: nc, ns: ns, node: node, log: log, metrics: m}
}

// Publish fills ID, Time, Cluster and Node (when empty) and sends ev.
func (p *Publisher) Publish(ev Event) {
	ev.ID = nuid.Next()
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	ev.Cluster = p.ns
	if ev.Node == "" {
		ev.Node = p.node
	}
	b, _ := json.Marshal(ev)
	msg := &nats.Msg{Subject: ev.Subject(), Data: b, Header: nats.Header{}}
	msg.Header.Set(nats.MsgIdHdr, ev.ID)
	if err := p.nc.PublishMsg(msg); err != nil {
		p.log.Debug("event not published", "subject", msg.Subject, "err", err)
		return
	}
	p.metrics.EventPublished(ev.Kind, ev.Type)
}

// Flush waits until published events reached the server, or timeout.
func (p *Publisher) Flush(timeout time.Duration) error {
	return p.nc.FlushTimeout(timeout)
}
