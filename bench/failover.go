package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// benchCluster is a three-node cluster of real coordinator processes running probe
// workers (the harness's recorder) and, when the build supports them, per-second cron
// jobs that log when each tick's command started.
type benchCluster struct {
	c      *cluster.Cluster
	ttl    time.Duration
	probes []string
	jobs   []string
	tail   *runTail
	logf   func(format string, args ...any)
}

// ticksFile is where the cron jobs' commands log "job tick node start-ns".
const ticksFile = "ticks.log"

func startBenchCluster(bins cluster.Binaries, dir string, ttl time.Duration, probes, jobs []string, logf func(string, ...any)) (*benchCluster, error) {
	var cfg strings.Builder
	q := func(s string) string { j, _ := json.Marshal(s); return string(j) }
	cfg.WriteString("workers:\n")
	for _, p := range probes {
		fmt.Fprintf(&cfg, "  - name: %s\n    command: [%s, %s]\n", q(p), q(bins.Recorder), q(dir))
	}
	if len(jobs) > 0 {
		cfg.WriteString("jobs:\n")
		cmd := `echo "$COORD_JOB $COORD_TICK $COORD_NODE $(date +%s%N)" >> '` + filepath.Join(dir, ticksFile) + `'`
		for _, j := range jobs {
			fmt.Fprintf(&cfg, "  - name: %s\n    schedule: \"@every 1s\"\n    command: [\"sh\", \"-c\", %s]\n", q(j), q(cmd))
		}
	}
	c, err := cluster.New(cluster.Options{Nodes: 3, TTL: ttl, Config: cfg.String(), Dir: dir, Binaries: bins, LogLevel: "info"})
	if err != nil {
		return nil, err
	}
	b := &benchCluster{c: c, ttl: ttl, probes: probes, jobs: jobs, tail: newRunTail(c.RunsPath()), logf: logf}
	if err := c.StartAll(); err != nil {
		c.Close()
		return nil, err
	}
	if err := b.waitRecovered(2 * time.Minute); err != nil {
		c.Close()
		return nil, fmt.Errorf("the TTL %v cluster did not come up: %w", ttl, err)
	}
	return b, nil
}

// Close stops the cluster. It returns the exactly-once violations found in the recorders'
// runs, if any: a benchmark that kills owners checks what it did, too.
func (b *benchCluster) Close() error {
	runs, err := b.c.Runs()
	b.c.Close()
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range cluster.CheckRuns(runs) {
		errs = append(errs, errors.New(v.String()))
	}
	return errors.Join(errs...)
}

// waitRecovered waits until every node is ready and the workers stream has a leader with
// every replica current: only then does a failure of another node leave a quorum.
func (b *benchCluster) waitRecovered(timeout time.Duration) error {
	var why string
	err := cluster.WaitFor(timeout, "the cluster to recover", func() bool {
		for _, n := range b.c.Nodes() {
			if !n.Ready() {
				why = n.Name() + " not ready"
				return false
			}
		}
		info, err := b.c.StreamInfo(b.c.WorkersStream())
		if err != nil {
			why = err.Error()
			return false
		}
		if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != b.c.Len()-1 {
			why = "workers stream without leader or replicas"
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				why = "replica on " + r.Name + " not current"
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("%w (%s)", err, why)
	}
	return nil
}

// settle waits until the cluster has recovered and placement has had time to move
// workers back to a restarted node.
func (b *benchCluster) settle() error {
	if err := b.waitRecovered(2 * time.Minute); err != nil {
		return err
	}
	cfg := ownershipTimings(b.ttl)
	time.Sleep(cfg.rebalance + 2*cfg.renew + 500*time.Millisecond)
	return nil
}

// pickProbe waits until every probe runs where its claim says, then returns a probe that
// runs on node index target — or, if that node runs none, on the next node that does.
func (b *benchCluster) pickProbe(target int) (string, tailRun, error) {
	var w string
	var r tailRun
	err := cluster.WaitFor(time.Minute, "the probes to run where their claims say", func() bool {
		if b.tail.update() != nil {
			return false
		}
		var st cluster.Status
		var err error = cluster.ErrNotRunning
		for _, n := range b.c.Nodes() {
			if st, err = n.Status(); err == nil {
				break
			}
		}
		if err != nil {
			return false
		}
		on := map[string][]string{}
		runs := map[string]tailRun{}
		for _, p := range b.probes {
			cur, ok := b.tail.current(p)
			claim, owned := st.Worker(p)
			if !ok || !cur.live() || !owned || claim.Node != cur.Node || claim.Token != cur.Token {
				return false
			}
			on[cur.Node] = append(on[cur.Node], p)
			runs[p] = cur
		}
		for k := range b.c.Len() {
			if ps := on[b.c.Node((target+k)%b.c.Len()).Name()]; len(ps) > 0 {
				w, r = ps[0], runs[ps[0]]
				return true
			}
		}
		return false
	})
	return w, r, err
}

// timings are the ownership timings the daemon derives from a TTL (ownership.ConfigForTTL).
type timings struct{ renew, rebalance time.Duration }

func ownershipTimings(ttl time.Duration) timings {
	renew := ttl / 5
	return timings{renew: renew, rebalance: 2 * renew}
}

// failoverSample stops node index target — SIGKILL, or SIGTERM when graceful — and
// returns a probe worker it ran, the time from the signal to the start of that worker on
// another node (recorder stamps), and whether the node led the workers stream. A graceful
// sample also adds the handoff's legs to res (sampleHandoffLegs). The node is started
// again before it returns.
func (b *benchCluster) failoverSample(target int, graceful bool, res *Results) (string, time.Duration, bool, error) {
	if err := b.settle(); err != nil {
		return "", 0, false, err
	}
	w, r, err := b.pickProbe(target)
	if err != nil {
		return "", 0, false, err
	}
	owner := b.c.NodeByName(r.Node)
	if owner == nil {
		return w, 0, false, fmt.Errorf("%s runs on unknown node %q", w, r.Node)
	}
	leader, _ := b.c.StreamLeader(b.c.WorkersStream())
	termDone := make(chan error, 1)
	t0 := cluster.MonoNow()
	if graceful {
		go func() {
			_, err := owner.Term()
			termDone <- err
		}()
	} else {
		if err := owner.Kill(); err != nil {
			return w, 0, false, err
		}
		termDone <- nil
	}
	var next tailRun
	err = cluster.WaitFor(90*time.Second, w+" to run elsewhere", func() bool {
		if b.tail.update() != nil {
			return false
		}
		var ok bool
		next, ok = b.tail.startedAfter(w, t0, owner.Name())
		return ok
	})
	if terr := <-termDone; terr != nil && err == nil {
		err = terr
	}
	if graceful && err == nil {
		err = sampleHandoffLegs(res, b.c.RunsPath(), w, t0, owner.Name())
	}
	if serr := owner.Start(); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return w, 0, false, err
	}
	return w, next.Start.Sub(t0), leader == owner.Name(), nil
}

// tailRun is a recorder run as far as the tail has read it.
type tailRun struct {
	Node    string
	Token   uint64
	PID     int
	Start   cluster.Mono
	Last    cluster.Mono // last beat (or the start)
	Stopped bool
}

// live: no stop line and a beat within the last second.
func (r tailRun) live() bool { return !r.Stopped && cluster.MonoNow().Sub(r.Last) < time.Second }

// runTail follows a runs.log incrementally (cluster.ReadRuns parses the whole file, which
// grows by tens of lines a second and would cost the machine CPU while it is measured).
type runTail struct {
	path    string
	off     int64
	partial []byte
	runs    map[string][]tailRun // by worker, in start order
}

func newRunTail(path string) *runTail { return &runTail{path: path, runs: map[string][]tailRun{}} }

func (t *runTail) update() error {
	f, err := os.Open(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(t.off, io.SeekStart); err != nil {
		return err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	t.off += int64(len(data))
	data = append(t.partial, data...)
	i := bytes.LastIndexByte(data, '\n')
	t.partial = append([]byte(nil), data[i+1:]...)
	for _, line := range strings.Split(string(data[:i+1]), "\n") {
		f := strings.Fields(line)
		if len(f) != 6 {
			continue
		}
		token, _ := strconv.ParseUint(f[3], 10, 64)
		stamp, _ := strconv.ParseInt(f[4], 10, 64)
		pid, _ := strconv.Atoi(f[5])
		w := f[1]
		switch f[0] {
		case "start":
			t.runs[w] = append(t.runs[w], tailRun{Node: f[2], Token: token, PID: pid, Start: cluster.Mono(stamp), Last: cluster.Mono(stamp)})
		case "beat", "stop":
			rs := t.runs[w]
			for k := len(rs) - 1; k >= 0; k-- {
				if rs[k].PID == pid {
					rs[k].Last = cluster.Mono(stamp)
					rs[k].Stopped = f[0] == "stop"
					break
				}
			}
		}
	}
	return nil
}

// current is the latest run of w.
func (t *runTail) current(w string) (tailRun, bool) {
	rs := t.runs[w]
	if len(rs) == 0 {
		return tailRun{}, false
	}
	return rs[len(rs)-1], true
}

// startedAfter is the first run of w that started after t0 on a node other than not.
func (t *runTail) startedAfter(w string, t0 cluster.Mono, not string) (tailRun, bool) {
	for _, r := range t.runs[w] {
		if r.Start > t0 && r.Node != not {
			return r, true
		}
	}
	return tailRun{}, false
}

// measureFailover takes handoffs SIGTERM samples and kills SIGKILL samples on b. Each
// one stops a node drawn from a fixed-seed generator — a random crash, so that the node
// leading the workers stream is hit about as often as the others — and measures a probe
// worker that node ran.
func measureFailover(ctx context.Context, b *benchCluster, kills, handoffs int, res *Results, killName string) error {
	rng := rand.New(rand.NewPCG(uint64(b.ttl), 1))
	for i := 0; i < handoffs && ctx.Err() == nil; i++ {
		w, d, _, err := b.failoverSample(rng.IntN(b.c.Len()), true, res)
		if err != nil {
			return fmt.Errorf("handoff %d: %w", i+1, err)
		}
		b.logf("  handoff %d/%d of %s: %v", i+1, handoffs, w, d.Round(100*time.Microsecond))
		res.Sample("handoff_ms", ms(d))
	}
	for i := 0; i < kills && ctx.Err() == nil; i++ {
		w, d, leader, err := b.failoverSample(rng.IntN(b.c.Len()), false, res)
		if err != nil {
			return fmt.Errorf("kill %d at TTL %v: %w", i+1, b.ttl, err)
		}
		note, lead := "", 0.0
		if leader {
			note, lead = " (the killed node led the workers stream)", 1
		}
		b.logf("  kill %d/%d of %s's owner at TTL %v: %v%s", i+1, kills, w, b.ttl, d.Round(time.Millisecond), note)
		res.Sample(killName, ms(d))
		res.Sample(killName+"_leader", lead)
	}
	return ctx.Err()
}
