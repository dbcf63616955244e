package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/jetcoord/coordinator/kv"
)

// Status is the shape of `coordinator status --json` and of /status. Fields are only ever
// added, never renamed or removed.
type Status struct {
	Namespace string         `json:"namespace"`
	Time      time.Time      `json:"time"`
	Workers   []WorkerStatus `json:"workers"`
	Nodes     []NodeStatus   `json:"nodes"`
}

// WorkerStatus is one claim.
type WorkerStatus struct {
	Worker   string    `json:"worker"`
	Node     string    `json:"node"`
	Token    uint64    `json:"token"`
	Since    time.Time `json:"since"`
	Renewed  time.Time `json:"renewed"`
	State    string    `json:"state"` // running, stopping, or unknown (a value that is not a claim)
	Revision uint64    `json:"revision"`
	Error    string    `json:"error,omitempty"`
	// Checkpoint is when the worker last saved state (ownership.Lease.SaveState); absent if never.
	Checkpoint *time.Time `json:"checkpoint,omitempty"`
}

// NodeStatus is one live node.
type NodeStatus struct {
	Node        string    `json:"node"`
	Incarnation string    `json:"incarnation"`
	Version     string    `json:"version"`
	Started     time.Time `json:"started"`
	Renewed     time.Time `json:"renewed"`
	Capacity    int       `json:"capacity"`
	Draining    bool      `json:"draining"`
	Workers     int       `json:"workers"`
	Addresses   []string  `json:"addresses,omitempty"`
}

func collectStatus(ctx context.Context, st *kv.Store) (Status, error) {
	if st == nil {
		return Status{}, errors.New("store not open yet")
	}
	s := Status{Namespace: st.Namespace(), Time: time.Now().UTC(), Workers: []WorkerStatus{}, Nodes: []NodeStatus{}}
	claims, err := st.Workers.ListClaims(ctx)
	if err != nil {
		return s, fmt.Errorf("reading claims: %w", err)
	}
	count := map[string]int{}
	for _, c := range claims {
		ws := WorkerStatus{Worker: c.Worker, Revision: c.Revision}
		if c.Err != nil {
			ws.State, ws.Error = "unknown", c.Err.Error()
		} else {
			ws.Node, ws.Token, ws.Since, ws.Renewed, ws.State = c.Claim.Node, c.Token(), c.Claim.Acquired, c.Claim.Renewed, c.Claim.State
			count[c.Claim.Node]++
		}
		s.Workers = append(s.Workers, ws)
	}
	sort.Slice(s.Workers, func(i, j int) bool { return s.Workers[i].Worker < s.Workers[j].Worker })
	if keys, err := st.State.Keys(ctx); err == nil {
		saved := map[string]time.Time{}
		for _, k := range keys {
			if rec, _, err := st.State.GetState(ctx, k); err == nil {
				saved[k] = rec.Saved
			}
		}
		for i := range s.Workers {
			if t, ok := saved[s.Workers[i].Worker]; ok {
				s.Workers[i].Checkpoint = &t
			}
		}
	}
	keys, err := st.Nodes.Keys(ctx)
	if err != nil {
		return s, fmt.Errorf("reading nodes: %w", err)
	}
	for _, k := range keys {
		e, err := st.Nodes.Get(ctx, k)
		if err != nil {
			continue // expired between the listing and the read
		}
		r, err := kv.DecodeNode(k, e.Value)
		if err != nil {
			continue
		}
		s.Nodes = append(s.Nodes, NodeStatus{Node: r.Node, Incarnation: r.Incarnation, Version: r.Version, Started: r.Started,
			Renewed: r.Renewed, Capacity: r.Capacity, Draining: r.Draining, Workers: count[r.Node], Addresses: r.Addresses})
	}
	sort.Slice(s.Nodes, func(i, j int) bool { return s.Nodes[i].Node < s.Nodes[j].Node })
	return s, nil
}

func isConflict(err error) bool { return errors.Is(err, kv.ErrConflict) }

func statusCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var conn natsFlags
	conn.register(fs, defaultCLIURL())
	asJSON := fs.Bool("json", false, "print JSON (the shape of the Status type; stable for scripts)")
	if err := fs.Parse(args); err != nil {
		return 2
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
	fmt.Fprintln(tw, "WORKER\tNODE\tTOKEN\tSINCE\tSTATE\tCHECKPOINT")
	for _, x := range s.Workers {
		if x.Error != "" {
			fmt.Fprintf(tw, "%s\t?\t-\t-\tunknown (%s)\t\n", x.Worker, x.Error)
			continue
		}
		cp := "-"
		if x.Checkpoint != nil {
			if cp = ago(s.Time, *x.Checkpoint); cp != "just now" {
				cp += " ago"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", x.Worker, x.Node, x.Token, ago(s.Time, x.Since), x.State, cp)
	}
	if len(s.Workers) == 0 {
		fmt.Fprintln(tw, "(no claims)\t\t\t\t\t")
	}
	fmt.Fprintln(tw, "\t\t\t\t\t")
	fmt.Fprintln(tw, "NODE\tWORKERS\tUP\tVERSION\tDRAINING")
	for _, n := range s.Nodes {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%v\n", n.Node, n.Workers, ago(s.Time, n.Started), n.Version, n.Draining)
	}
	if len(s.Nodes) == 0 {
		fmt.Fprintln(tw, "(no live nodes)\t\t\t\t")
	}
	_ = tw.Flush()
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
