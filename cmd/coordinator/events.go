package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetcoord/coordinator/kv"
	"github.com/jetcoord/coordinator/ownership"
)

func eventsCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var conn natsFlags
	conn.register(fs, defaultCLIURL())
	follow := fs.Bool("follow", false, "keep printing new events until interrupted")
	since := fs.Duration("since", time.Hour, "show events from this long ago")
	asJSON := fs.Bool("json", false, "print each event as its JSON payload, one per line")
	filter := fs.String("filter", ">", "subject filter below <ns>.events., e.g. 'worker.billing.>'")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	nc, st, err := cliConnect(&conn)
	if err != nil {
		fmt.Fprintf(stderr, "coordinator events: %v\n", err)
		return 1
	}
	defer nc.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stream := kv.EventsStream(st.Namespace())
	// Without --follow, print what the stream holds up to now: everything up to its last
	// sequence at this moment, however the messages are spaced.
	var upTo uint64
	if !*follow {
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		s, err := st.JetStream().Stream(ictx, stream)
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = s.Info(ictx)
		}
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "coordinator events: reading stream %s: %v\n", stream, err)
			return 1
		}
		if upTo = info.State.LastSeq; upTo == 0 || info.State.Msgs == 0 {
			return 0
		}
	}
	cons, err := st.JetStream().OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{kv.EventsSubject(st.Namespace()) + "." + *filter},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   ptr(time.Now().Add(-*since)),
	})
	if err != nil {
		fmt.Fprintf(stderr, "coordinator events: reading stream %s: %v\n", stream, err)
		return 1
	}
	if !*follow {
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		info, err := cons.Info(ictx)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "coordinator events: reading stream %s: %v\n", stream, err)
			return 1
		}
		if info.NumPending == 0 {
			return 0 // nothing matches
		}
	}
	for {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		msg, err := cons.Next(jetstream.FetchContext(fctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			if !*follow {
				fmt.Fprintf(stderr, "coordinator events: stream %s stopped answering before its end: %v\n", stream, err)
				return 1
			}
			continue
		}
		meta, err := msg.Metadata()
		if err != nil {
			fmt.Fprintf(stderr, "coordinator events: %v\n", err)
			return 1
		}
		if upTo != 0 && meta.Sequence.Stream > upTo {
			return 0 // newer than the start of this command
		}
		if *asJSON {
			fmt.Fprintln(stdout, string(msg.Data()))
		} else {
			var ev ownership.Event
			if json.Unmarshal(msg.Data(), &ev) != nil {
				fmt.Fprintf(stdout, "%s (not an event: %q)\n", msg.Subject(), msg.Data())
			} else {
				fmt.Fprintln(stdout, formatEvent(ev))
			}
		}
		if upTo != 0 && (meta.Sequence.Stream >= upTo || meta.NumPending == 0) {
			return 0
		}
	}
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
