package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jetcoord/coordinator/internal/config"
	"github.com/jetcoord/coordinator/kv"
	"github.com/jetcoord/coordinator/ownership"
	"github.com/jetcoord/coordinator/scheduler"
	"github.com/jetcoord/coordinator/supervise"
)

// jobRunner runs the config file's cron jobs as supervised commands.
type jobRunner struct {
	d *daemon
	s *scheduler.Scheduler

	mu   sync.Mutex
	jobs map[string]config.Job
}

func startJobs(ctx context.Context, d *daemon, jobs []config.Job) (*jobRunner, error) {
	node := d.cfg.Node.Name
	s, err := scheduler.New(d.store, node,
		scheduler.WithLogger(d.log),
		scheduler.WithPublisher(ownership.NewPublisher(d.nc, d.cfg.Namespace, node, d.log, d.metrics)),
		scheduler.WithPlacement(scheduler.PlacementFunc(func(job string) bool { return d.engine.Preferred(job) == node })),
		// The same timings as the engine's (the one rule): a job's command is killed by
		// RenewDeadline + FenceGrace of its last renewal, before the TTL.
		scheduler.WithTiming(d.cfg.Timing.Lease()))
	if err != nil {
		return nil, err
	}
	jr := &jobRunner{d: d, s: s, jobs: map[string]config.Job{}}
	for _, j := range jobs {
		if err := jr.add(j); err != nil {
			return nil, err
		}
	}
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	return jr, nil
}

func (jr *jobRunner) add(j config.Job) error {
	overlap, err := scheduler.ParseOverlap(string(j.Overlap))
	if err != nil {
		return err
	}
	catchUp, err := scheduler.ParseCatchUp(string(j.CatchUp))
	if err != nil {
		return err
	}
	opts := []scheduler.JobOption{scheduler.WithTimeZone(j.Timezone), scheduler.WithOverlap(overlap),
		scheduler.WithCatchUp(catchUp, j.CatchUpLimit), scheduler.WithRetryLost(j.RetryLost)}
	if j.Timeout > 0 {
		opts = append(opts, scheduler.WithTimeout(time.Duration(j.Timeout)))
	}
	if err := jr.s.Add(j.Name, j.Schedule, jr.command(j), opts...); err != nil {
		return err
	}
	jr.mu.Lock()
	jr.jobs[j.Name] = j
	jr.mu.Unlock()
	return nil
}

// tickLease adapts a running tick to what the watchdog needs.
type tickLease struct{ t scheduler.Tick }

func (l tickLease) Token() uint64                          { return l.t.Token }
func (l tickLease) Deadline() (time.Time, <-chan struct{}) { return l.t.Deadline() }

// command returns the job function that runs j's command under its watchdog, with
// COORD_JOB and COORD_TICK (the tick's Unix seconds) besides COORD_NODE and COORD_TOKEN.
func (jr *jobRunner) command(j config.Job) func(context.Context, scheduler.Tick) error {
	d := jr.d
	return func(ctx context.Context, t scheduler.Tick) error {
		spec := supervise.Spec{
			Name:    j.Name,
			Command: j.Command[0],
			Args:    j.Command[1:],
			Env: append(envList(j.Env), "COORD_JOB="+j.Name, "COORD_TICK="+strconv.FormatInt(t.Time.Unix(), 10),
				"COORD_NODE="+d.cfg.Node.Name, fmt.Sprintf("COORD_TOKEN=%d", t.Token)),
			Dir:        j.Dir,
			StopSignal: syscall.Signal(j.StopSignal),
			StopGrace:  time.Duration(j.StopGrace),
			FenceGrace: t.FenceGrace(), // the run lease's, not the engine's: they must go with its deadline
			Logger:     d.log,
		}
		err := supervise.Run(ctx, spec, tickLease{t})
		result := "succeeded"
		if err != nil {
			result = "failed"
		}
		d.metrics.JobRun(j.Name, result)
		return err
	}
}

// reload applies a new job list: removed and changed jobs are removed, new and changed ones
// added. It returns how many changed.
func (jr *jobRunner) reload(ctx context.Context, jobs []config.Job) int {
	want := map[string]config.Job{}
	for _, j := range jobs {
		want[j.Name] = j
	}
	jr.mu.Lock()
	var drop []string
	for name, old := range jr.jobs {
		if nj, ok := want[name]; !ok || !reflect.DeepEqual(old, nj) {
			drop = append(drop, name)
		}
	}
	jr.mu.Unlock()
	changed := 0
	for _, name := range drop {
		if err := jr.s.Remove(ctx, name); err != nil {
			jr.d.log.Error("SIGHUP: could not remove job", "job", name, "err", err)
		}
		jr.mu.Lock()
		delete(jr.jobs, name)
		jr.mu.Unlock()
		changed++
	}
	for _, j := range jobs {
		jr.mu.Lock()
		_, have := jr.jobs[j.Name]
		jr.mu.Unlock()
		if have {
			continue
		}
		if err := jr.add(j); err != nil {
			jr.d.log.Error("SIGHUP: could not add job", "job", j.Name, "err", err)
			continue
		}
		changed++
	}
	return changed
}

func (jr *jobRunner) close() { _ = jr.s.Close() }

// JobInfo is the shape of `coordinator jobs --json`.
type JobInfo struct {
	Name     string         `json:"name"`
	Schedule string         `json:"schedule"`
	TimeZone string         `json:"timezone"`
	Overlap  string         `json:"overlap"`
	CatchUp  string         `json:"catch_up"`
	Next     time.Time      `json:"next"`
	Last     *scheduler.Run `json:"last,omitempty"`
	Running  int            `json:"running"`
}

func (jr *jobRunner) list(ctx context.Context) ([]JobInfo, error) {
	st, err := jr.s.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]JobInfo, 0, len(st))
	for _, j := range st {
		out = append(out, JobInfo{Name: j.Name, Schedule: j.Spec, TimeZone: j.TimeZone, Overlap: fmt.Sprint(j.Overlap),
			CatchUp: fmt.Sprint(j.CatchUp), Next: j.Next, Last: j.Last, Running: len(j.Running)})
	}
	return out, nil
}

// jobsCmd lists jobs (asking a live node, which knows the schedules) or, as `jobs run
// NAME`, triggers one run now, still exactly once in the cluster.
func jobsCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var conn natsFlags
	conn.register(fs, defaultCLIURL())
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	op, req := "jobs", ctlRequest{}
	switch {
	case len(pos) == 0:
	case len(pos) == 2 && pos[0] == "run":
		op, req.Worker = "trigger", pos[1]
	default:
		fmt.Fprintln(stderr, "usage: coordinator jobs [--json] | coordinator jobs run NAME")
		return 2
	}
	nc, st, err := cliConnect(&conn)
	if err != nil {
		fmt.Fprintf(stderr, "coordinator jobs: %v\n", err)
		return 1
	}
	defer nc.Close()
	node, err := anyLiveNode(st)
	if err != nil {
		fmt.Fprintf(stderr, "coordinator jobs: %v\n", err)
		return 1
	}
	r, err := ctlCall(nc, ctlSubject(st.Namespace(), node, op), req, 30*time.Second)
	if err != nil {
		fmt.Fprintf(stderr, "coordinator jobs: %v\n", err)
		return 1
	}
	if op == "trigger" {
		fmt.Fprintln(stdout, r.Info)
		return 0
	}
	var jobs []JobInfo
	if err := json.Unmarshal([]byte(r.Info), &jobs); err != nil {
		fmt.Fprintf(stderr, "coordinator jobs: bad reply from %s: %v\n", node, err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(jobs)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSCHEDULE\tNEXT\tLAST\tRESULT\tNODE")
	now := time.Now()
	for _, j := range jobs {
		last, result, lnode := "-", "-", "-"
		if j.Last != nil {
			last, result, lnode = ago(now, j.Last.Tick), j.Last.State, j.Last.Node
			if last != "just now" {
				last += " ago"
			}
			if j.Last.Error != "" {
				result += ": " + j.Last.Error
			}
		}
		fmt.Fprintf(tw, "%s\t%s\tin %s\t%s\t%s\t%s\n", j.Name, j.Schedule, j.Next.Sub(now).Round(time.Second), last, result, lnode)
	}
	if len(jobs) == 0 {
		fmt.Fprintln(tw, "(no jobs)\t\t\t\t\t")
	}
	_ = tw.Flush()
	return 0
}

// anyLiveNode picks a node from the nodes bucket to ask.
func anyLiveNode(st *kv.Store) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := st.Nodes.Keys(ctx)
	if err != nil {
		return "", err
	}
	if len(keys) == 0 {
		return "", errors.New("no live node in the cluster")
	}
	return keys[0], nil
}
