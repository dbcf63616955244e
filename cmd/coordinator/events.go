package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jetcoord/coordinator/kv"
	"github.com/jetcoord/coordinator/ownership"
	"github.com/nats-io/nats.go/jetstream"
)

func eventsCmd(args []string, stdout, stderr io.Writer) int {
	fs := newCmd("events", "[flags]", "Print the lifecycle events the stream holds (from --since ago), then exit; --follow keeps printing new ones.", stdout, stderr)
	var conn natsFlags
	conn.register(fs.FlagSet, defaultCLIURL())
	follow := fs.Bool("follow", false, "keep printing new events until interrupted")
	since := fs.Duration("since", time.Hour, "show events from this long ago")
	asJSON := fs.Bool("json", false, "print each event as its JSON payload, one per line")
	filter := fs.String("filter", ">", "subject filter below <ns>.events., e.g. 'worker.billing.>'")
	pos, code := fs.parse(args)
	if code >= 0 {
		return code
	}
	if len(pos) > 0 {
		return fs.usageError(fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	nc, st, err := cliConnect(&conn)
	if err != nil {
		fmt.Fprintf(stderr, "coordinator events: %v\n", err)
		return 1
	}
	defer nc.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	print := func(data []byte) {
		if *asJSON {
			fmt.Fprintln(stdout, string(data))
			return
		}
		var ev ownership.Event
		if json.Unmarshal(data, &ev) != nil {
			fmt.Fprintf(stdout, "(not an event: %q)\n", data)
			return
		}
		fmt.Fprintln(stdout, formatEvent(ev))
	}
	// Without --follow, print what the stream holds up to now: everything up to its last
	// sequence at this moment, however the messages are spaced.
	err = readStream(ctx, st.JetStream(), kv.EventsStream(st.Namespace()), kv.EventsSubject(st.Namespace())+"."+*filter, *since, *follow, print)
	if err != nil {
		fmt.Fprintf(stderr, "coordinator events: %v\n", err)
		return 1
	}
	return 0
}

// eventConsumer reads the events stream below filter ('>' for all): after stream sequence
// after, or when after is 0 from since ago. The status page uses it.
func eventConsumer(ctx context.Context, st *kv.Store, filter string, after uint64, since time.Duration) (jetstream.Consumer, error) {
	stream := kv.EventsStream(st.Namespace())
	cons, err := st.JetStream().OrderedConsumer(ctx, stream, orderedFrom(kv.EventsSubject(st.Namespace())+"."+filter, after, since))
	if err != nil {
		return nil, fmt.Errorf("reading stream %s: %w", stream, err)
	}
	return cons, nil
}

// orderedFrom is an ordered consumer of subject that starts after stream sequence after,
// or when after is 0 at since ago: the events and logs readers share it.
func orderedFrom(subject string, after uint64, since time.Duration) jetstream.OrderedConsumerConfig {
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   ptr(time.Now().Add(-since)),
	}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartTime, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, nil, after+1
	}
	return cfg
}

func formatEvent(ev ownership.Event) string {
	s := fmt.Sprintf("%s  %-6s %-22s %-9s node=%s", ev.Time.Local().Format("2006-01-02 15:04:05.000"), ev.Kind, ev.Name, ev.Type, ev.Node)
	if ev.Token != 0 {
		s += fmt.Sprintf(" token=%d", ev.Token)
	}
	if ev.Reason != "" {
		s += " reason=" + ev.Reason
	}
	if ev.From != "" {
		s += " from=" + ev.From
	}
	if ev.To != "" {
		s += " to=" + ev.To
	}
	if ev.Error != "" {
		s += fmt.Sprintf(" error=%q", ev.Error)
	}
	return s
}

func ptr[T any](v T) *T { return &v }
