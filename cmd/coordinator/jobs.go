package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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

	mu      sync.Mutex
	jobs    map[string]config.Job
	results map[uint64]chan jobResult // runs a `jobs run --wait` waits for, by token
	noWait  map[uint64]struct{}       // triggered runs nobody waits for: report keeps nothing
}

// jobResult is how one run of a job's command ended, for `jobs run NAME --wait`.
type jobResult struct {
	Job      string    `json:"job"`
	Node     string    `json:"node"`
	Token    uint64    `json:"token"`
	Started  time.Time `json:"started"`
	Duration string    `json:"duration"`
	// ExitCode is the command's exit status; 128+N when signal N killed it; 1 when it could
	// not start or failed without a status.
	ExitCode int    `json:"exit_code"`
	Error    string `json:"error,omitempty"`
}

// exitCode maps a supervised command's result to a process exit status, as a shell does.
func exitCode(err error) int {
	var ee *supervise.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.Signal != 0:
		return 128 + int(ee.Signal)
	case errors.As(err, &ee):
		return ee.Code
	}
	return 1
}

// expect registers interest in the result of the run with token.
func (jr *jobRunner) expect(token uint64) chan jobResult {
	jr.mu.Lock()
	defer jr.mu.Unlock()
	ch, ok := jr.results[token]
	if !ok {
		ch = make(chan jobResult, 1)
		jr.results[token] = ch
	}
	return ch
}

func (jr *jobRunner) report(r jobResult) {
	jr.mu.Lock()
	if _, ok := jr.noWait[r.Token]; ok {
		delete(jr.noWait, r.Token)
		jr.mu.Unlock()
		return
	}
	ch, ok := jr.results[r.Token]
	if !ok {
		// Nobody waits yet; keep it for a waiter that registers after a fast run ends.
		ch = make(chan jobResult, 1)
		jr.results[r.Token] = ch
	}
	jr.mu.Unlock()
	select {
	case ch <- r:
	default:
	}
}

// dontWait says nobody will wait for the run with token: what report kept for it is
// dropped, and a later report keeps nothing.
func (jr *jobRunner) dontWait(token uint64) {
	jr.mu.Lock()
	defer jr.mu.Unlock()
	if _, ok := jr.results[token]; ok {
		delete(jr.results, token)
		return
	}
	jr.noWait[token] = struct{}{}
}

// forget drops what report kept for token.
func (jr *jobRunner) forget(token uint64) {
	jr.mu.Lock()
	delete(jr.results, token)
	jr.mu.Unlock()
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
	jr := &jobRunner{d: d, s: s, jobs: map[string]config.Job{}, results: map[uint64]chan jobResult{}, noWait: map[uint64]struct{}{}}
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
			Logger:     d.outputLogger("job", j.Name, t.Token),
			LogKey:     "job",
		}
		started := time.Now()
		err := supervise.Run(ctx, spec, tickLease{t})
		result := "succeeded"
		if err != nil {
			result = "failed"
		}
		d.metrics.JobRun(j.Name, result)
		if t.Manual {
			r := jobResult{Job: j.Name, Node: d.cfg.Node.Name, Token: t.Token, Started: started.UTC(),
				Duration: time.Since(started).Round(time.Millisecond).String(), ExitCode: exitCode(err)}
			if err != nil {
				r.Error = err.Error()
			}
			jr.report(r)
		}
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

// jobsCmd lists jobs (asking a live node, which knows the schedules), shows one job's last
// runs (`jobs NAME`, from the jobs bucket), or, as `jobs run NAME [--wait]`, triggers one run
// now, still exactly once in the cluster.
func jobsCmd(args []string, stdout, stderr io.Writer) int {
	fs := newCmd("jobs", "[flags] | jobs [flags] NAME | jobs run [--wait] [flags] NAME",
		"List cron jobs with their next tick and last run; with NAME, the job's last runs (start, duration, result, exit code, node);\n"+
			"'jobs run NAME' runs it once now (--wait: wait for it and exit with its exit code).", stdout, stderr)
	var conn natsFlags
	conn.register(fs.FlagSet, defaultCLIURL())
	asJSON := fs.Bool("json", false, "print JSON")
	wait := fs.Bool("wait", false, "jobs run: wait until the run ends and exit with its exit code")
	timeout := fs.Duration("timeout", time.Hour, "jobs run --wait: how long to wait")
	last := fs.Int("last", 10, "jobs NAME: how many runs to show")
	since := fs.Duration("since", 24*time.Hour, "jobs NAME: how far back to look")
	pos, code := fs.parse(args)
	if code >= 0 {
		return code
	}
	op, req := "jobs", ctlRequest{}
	switch {
	case len(pos) == 0:
	case len(pos) == 2 && pos[0] == "run":
		op, req.Worker, req.Wait = "trigger", pos[1], *wait
	case len(pos) == 1 && pos[0] != "run":
		op = "history"
	default:
		return fs.usageError("expected no argument, NAME, or run NAME")
	}
	fail := func(err error) int { return cliFail(stdout, stderr, "jobs", *asJSON, err) }
	nc, st, err := cliConnect(&conn)
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	if op == "history" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		runs, err := jobHistory(ctx, st, pos[0], *since, *last)
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			printJSON(stdout, runs)
			return 0
		}
		printHistory(stdout, pos[0], runs)
		return 0
	}
	node, err := anyLiveNode(st)
	if err != nil {
		return fail(err)
	}
	ctlTimeout := 30 * time.Second
	if req.Wait {
		ctlTimeout = *timeout
	}
	r, err := ctlCall(nc, ctlSubject(st.Namespace(), node, op), req, ctlTimeout)
	if err != nil {
		return fail(err)
	}
	if op == "trigger" {
		if !req.Wait {
			if *asJSON {
				printJSON(stdout, map[string]any{"ok": true, "job": req.Worker, "info": r.Info})
				return 0
			}
			fmt.Fprintln(stdout, r.Info)
			return 0
		}
		var res jobResult
		if err := json.Unmarshal([]byte(r.Info), &res); err != nil {
			return fail(fmt.Errorf("bad reply from %s: %v", node, err))
		}
		if *asJSON {
			printJSON(stdout, res)
		} else {
			fmt.Fprintf(stdout, "job %q ran on %s (token %d) for %s: exit code %d\n", res.Job, res.Node, res.Token, res.Duration, res.ExitCode)
			if res.Error != "" {
				fmt.Fprintf(stderr, "coordinator jobs: %s\n", res.Error)
			}
		}
		return res.ExitCode
	}
	var jobs []JobInfo
	if err := json.Unmarshal([]byte(r.Info), &jobs); err != nil {
		return fail(fmt.Errorf("bad reply from %s: %v", node, err))
	}
	if *asJSON {
		printJSON(stdout, jobs)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSCHEDULE\tNEXT\tLAST\tRESULT\tNODE")
	now := time.Now()
	for _, j := range jobs {
		last, result, lnode := "-", "-", "-"
		if j.Last != nil {
			last, result, lnode = agoSuffix(now, j.Last.Tick), j.Last.State, j.Last.Node
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

// JobRun is one run in `coordinator jobs NAME --json`: the scheduler's run record with its
// duration and exit code.
type JobRun struct {
	scheduler.Run
	Key      string `json:"key"`
	Duration string `json:"duration,omitempty"`
	// ExitCode is the command's exit status when the record tells it: 0 for a success, N
	// for "exited with code N"; absent otherwise.
	ExitCode *int `json:"exit_code,omitempty"`
}

var exitedWith = regexp.MustCompile(`exited with code (-?\d+)`)

// jobHistory reads the last runs of job from the jobs bucket: the newest record of each
// tick key written within since, newest first, at most n.
func jobHistory(ctx context.Context, st *kv.Store, job string, since time.Duration, n int) ([]JobRun, error) {
	if err := kv.ValidName("job", job); err != nil {
		return nil, err
	}
	stream := "KV_" + st.Jobs.Name()
	prefix := "$KV." + st.Jobs.Name() + "."
	info, err := st.JetStream().Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("reading stream %s: %w", stream, err)
	}
	si, err := info.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading stream %s: %w", stream, err)
	}
	cons, err := st.JetStream().OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{prefix + job + ".*"},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   ptr(time.Now().Add(-since)),
	})
	if err != nil {
		return nil, fmt.Errorf("reading stream %s: %w", stream, err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading stream %s: %w", stream, err)
	}
	byKey := map[string]JobRun{}
	for pending := ci.NumPending; pending > 0; {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("reading stream %s: %w", stream, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return nil, err
		}
		pending = meta.NumPending
		key := strings.TrimPrefix(msg.Subject(), prefix)
		tok := strings.TrimPrefix(key, job+".")
		if _, err := strconv.ParseInt(strings.TrimSuffix(tok, "-manual"), 10, 64); err != nil {
			continue // .last, .catchup
		}
		if op := msg.Headers().Get("KV-Operation"); op != "" {
			delete(byKey, key)
			continue
		}
		var r scheduler.Run
		if json.Unmarshal(msg.Data(), &r) != nil || r.Job != job {
			continue
		}
		jr := JobRun{Run: r, Key: key}
		if r.Token == 0 {
			jr.Token = meta.Sequence.Stream
		}
		if !r.Started.IsZero() && !r.Ended.IsZero() {
			jr.Duration = r.Ended.Sub(r.Started).Round(time.Millisecond).String()
		}
		switch m := exitedWith.FindStringSubmatch(r.Error); {
		case r.State == scheduler.StateSucceeded:
			jr.ExitCode = ptr(0)
		case m != nil:
			c, _ := strconv.Atoi(m[1])
			jr.ExitCode = &c
		}
		byKey[key] = jr
		if meta.Sequence.Stream >= si.State.LastSeq {
			break
		}
	}
	out := make([]JobRun, 0, len(byKey))
	for _, r := range byKey {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tick.After(out[j].Tick) })
	if len(out) > n {
		out = out[:n]
	}
	return out, nil
}

func printHistory(w io.Writer, job string, runs []JobRun) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TICK\tSTARTED\tDURATION\tRESULT\tEXIT\tNODE\tTOKEN\tREASON")
	for _, r := range runs {
		started, dur, exit := "-", "-", "-"
		if !r.Started.IsZero() {
			started = r.Started.Local().Format("2006-01-02 15:04:05")
		}
		if r.Duration != "" {
			dur = r.Duration
		}
		if r.ExitCode != nil {
			exit = strconv.Itoa(*r.ExitCode)
		}
		tick := r.Tick.Local().Format("2006-01-02 15:04:05")
		if r.Manual {
			tick += " (manual)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", tick, started, dur, r.State, exit, r.Node, r.Token, r.Reason)
	}
	if len(runs) == 0 {
		fmt.Fprintf(tw, "(no runs of %q recorded)\t\t\t\t\t\t\t\n", job)
	}
	_ = tw.Flush()
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
