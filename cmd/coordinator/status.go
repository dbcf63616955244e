package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jetcoord/coordinator/kv"
	"github.com/jetcoord/coordinator/ownership"
)

// Status is the shape of `coordinator status --json` and of /status (see ownership.Status).
type Status = ownership.Status

func collectStatus(ctx context.Context, st *kv.Store) (Status, error) {
	if st == nil {
		return Status{}, errors.New("store not open yet")
	}
	return ownership.ReadStatus(ctx, st)
}

func isConflict(err error) bool { return errors.Is(err, kv.ErrConflict) }

func statusCmd(args []string, stdout, stderr io.Writer) int {
	fs := newCmd("status", "[flags]", "Show every claimed worker — owner, token, what it is doing (state, restarts, last exit) — and the live nodes.", stdout, stderr)
	var conn natsFlags
	conn.register(fs.FlagSet, defaultCLIURL())
	asJSON := fs.Bool("json", false, "print JSON (the shape of the Status type; stable for scripts)")
	pos, code := fs.parse(args)
	if code >= 0 {
		return code
	}
	if len(pos) > 0 {
		return fs.usageError(fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	nc, st, err := cliConnect(&conn)
	if err != nil {
		fmt.Fprintf(stderr, "coordinator status: %v\n", err)
		return 1
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := collectStatus(ctx, st)
	if err != nil {
		fmt.Fprintf(stderr, "coordinator status: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s)
		return 0
	}
	printStatus(stdout, s)
	return 0
}

func printStatus(w io.Writer, s Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tNODE\tTOKEN\tSINCE\tSTATE\tRESTARTS\tLAST EXIT\tCHECKPOINT")
	var notes []string
	for _, x := range s.Workers {
		if x.Error != "" {
			fmt.Fprintf(tw, "%s\t?\t-\t-\tunknown\t-\t-\t-\n", x.Worker)
			notes = append(notes, fmt.Sprintf("%s: not a claim: %s", x.Worker, x.Error))
			continue
		}
		cp := "-"
		if x.Checkpoint != nil {
			cp = agoSuffix(s.Time, *x.Checkpoint)
		}
		if x.Detail != "" {
			notes = append(notes, x.Worker+": "+x.Detail)
		}
		if x.LastExit != nil && x.LastExit.Error != "" && x.State != ownership.StateRunning {
			notes = append(notes, fmt.Sprintf("%s: last run (%s): %s", x.Worker, x.LastExit.Ran, x.LastExit.Error))
		}
		if x.State == ownership.StateUnclaimed {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t%s\t-\t-\t%s\n", x.Worker, x.State, cp)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", x.Worker, x.Node, x.Token, ago(s.Time, x.Since), x.State,
			x.Restarts, lastExit(s.Time, x.LastExit), cp)
	}
	if len(s.Workers) == 0 {
		fmt.Fprintln(tw, "(no claims)\t\t\t\t\t\t\t")
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	for _, n := range notes {
		fmt.Fprintln(w, "  "+n)
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tWORKERS\tUP\tVERSION\tDRAINING\tADDRESS")
	for _, n := range s.Nodes {
		addr := "-"
		if len(n.Addresses) > 0 {
			addr = strings.Join(n.Addresses, ",")
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%v\t%s\n", n.Node, n.Workers, ago(s.Time, n.Started), n.Version, n.Draining, addr)
	}
	if len(s.Nodes) == 0 {
		fmt.Fprintln(tw, "(no live nodes)\t\t\t\t\t")
	}
	_ = tw.Flush()
}

// lastExit prints how a run ended, e.g. "code 3, 4s ago" or "error, 2s ago".
func lastExit(now time.Time, x *ownership.Exit) string {
	if x == nil {
		return "-"
	}
	what := "error"
	if x.Code != nil {
		what = fmt.Sprintf("code %d", *x.Code)
	}
	return what + ", " + agoSuffix(now, x.Time)
}

func agoSuffix(now, t time.Time) string {
	s := ago(now, t)
	if s != "just now" && s != "-" {
		s += " ago"
	}
	return s
}

// ago prints how long before now t was, rounded for people.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// defaultCLIURL is where operator commands look for a node: $COORD_NATS_URL, or the local
// embedded default.
func defaultCLIURL() string {
	if u := getenv("COORD_NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}
