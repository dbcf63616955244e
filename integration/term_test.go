package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// One term at a time (issue 12): an operator's delete or purge of a live claim, a reload
// that changes a worker and a handoff that outlive their graces must never run a second
// copy — not on another node, and not on the same one. The command ignores SIGTERM, so
// only the watchdog's SIGKILL ends it.

// stubborn is a recorder that ignores its stop signal.
func stubborn(name string) cluster.WorkerSpec {
	return cluster.WorkerSpec{Name: name, Env: map[string]string{"RECORDER_IGNORE_STOP": "1"}, StopGrace: 30 * time.Second}
}

// overlapReport fails the test for every violation and returns the longest time two
// copies of one worker ran, or one was started while another ran: a copy refused by the
// recorder's lock counts from its start to the end of the copy that held the lock.
func overlapReport(t *testing.T, c *cluster.Cluster, what string, since cluster.Mono) time.Duration {
	t.Helper()
	runs, err := c.Runs()
	if err != nil {
		t.Fatal(err)
	}
	var worst time.Duration
	for _, v := range cluster.CheckRuns(runs) {
		if max(v.A.Start, v.B.Start) < since {
			continue // reported by an earlier step
		}
		a, b := v.A, v.B
		switch v.Kind {
		case cluster.ViolationOverlap:
		case cluster.ViolationLock:
			for _, h := range runs {
				if !h.Overlap && h.Worker == v.Worker && h.Start <= v.A.Start && v.A.Start < h.End {
					a, b = h, v.A
				}
			}
			if b != v.A {
				t.Errorf("%s: %v", what, v)
				continue
			}
		default:
			t.Errorf("%s: %v", what, v)
			continue
		}
		d := a.End.Sub(b.Start)
		if !b.Overlap {
			d = min(a.End, b.End).Sub(b.Start)
		}
		worst = max(worst, d)
		where := "across nodes"
		if a.Node == b.Node {
			where = "on one node"
		}
		t.Errorf("%s: a second copy started %s while the first still ran for %s: %v", what, where, ms(d), v)
	}
	return worst
}

// quiet lets the cluster run for d, an observation window.
func quiet(t *testing.T, d time.Duration) {
	t.Helper()
	end := cluster.MonoNow().Add(d)
	_ = cluster.WaitFor(d+time.Minute, "the observation window", func() bool { return cluster.MonoNow() > end })
}

// TestClaimDeletedByHand: `nats kv del` and `nats kv purge` of the live claim of a command
// that ignores SIGTERM. The owner fences at once; nobody starts the worker again until the
// old copy is gone.
func TestClaimDeletedByHand(t *testing.T) {
	t.Parallel()
	c := startCluster(t, cluster.Options{TTL: 2 * time.Second, Workers: []cluster.WorkerSpec{stubborn("w")}})
	nc, err := nats.Connect(c.ClientURLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bucket, err := js.KeyValue(ctx, c.Namespace()+"_workers")
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"del", "purge"} {
		settle(t, c, "w")
		r := liveRun(t, c, "w", takeoverTimeout)
		t0 := cluster.MonoNow()
		if op == "del" {
			err = bucket.Delete(ctx, "w")
		} else {
			err = bucket.Purge(ctx, "w")
		}
		if err != nil {
			t.Fatalf("kv %s: %v", op, err)
		}
		r2, err := c.WaitRun("w", takeoverTimeout, func(x cluster.Run) bool { return x.Start > t0 })
		if err != nil {
			t.Fatal(err)
		}
		waitGone(t, r.PID, "the old copy")
		t.Logf("kv %s of %s's claim: old copy gone %s after, next copy on %s after %s",
			op, r.Node, ms(runOf(mustRuns(t, c), r).End.Sub(t0)), r2.Node, ms(r2.Start.Sub(t0)))
		quiet(t, c.TTL())
		overlapReport(t, c, "kv "+op, t0)
	}
}

// TestTermOutlivesShutdownGrace: a worker whose stop takes longer than shutdown_grace is
// changed by a SIGHUP reload, then released with `coordinator release`. The claim of the
// term that overran is left to expire, and the name is not claimed again on the node while
// the old command runs.
func TestTermOutlivesShutdownGrace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeCfg := func(gen int) string {
		return fmt.Sprintf(`timing:
  shutdown_grace: 1s
workers:
  - name: w
    command: [%q, %q]
    stop_grace: 30s
    env:
      RECORDER_IGNORE_STOP: "1"
      GENERATION: "%d"
`, bins.Recorder, dir, gen)
	}
	c := startCluster(t, cluster.Options{Nodes: 1, TTL: 2 * time.Second, Dir: dir, Config: writeCfg(1)})
	n := c.Node(0)

	settle(t, c, "w")
	r := liveRun(t, c, "w", takeoverTimeout)
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(writeCfg(2)), 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := cluster.MonoNow()
	if err := n.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	r2, err := c.WaitRun("w", takeoverTimeout, func(x cluster.Run) bool { return x.Start > t0 })
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, r.PID, "the old copy")
	t.Logf("reload: old copy gone %s after SIGHUP, next copy after %s", ms(runOf(mustRuns(t, c), r).End.Sub(t0)), ms(r2.Start.Sub(t0)))
	quiet(t, c.TTL())
	overlapReport(t, c, "reload", t0)

	settle(t, c, "w")
	r = liveRun(t, c, "w", takeoverTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t1 := cluster.MonoNow()
	if out, err := n.CLI(ctx, "release", "w"); err != nil {
		t.Logf("release: %v: %s", err, out)
	}
	r3, err := c.WaitRun("w", takeoverTimeout, func(x cluster.Run) bool { return x.Start > t1 })
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, r.PID, "the released copy")
	t.Logf("release: old copy gone %s after, next copy after %s", ms(runOf(mustRuns(t, c), r).End.Sub(t1)), ms(r3.Start.Sub(t1)))
	quiet(t, c.TTL())
	overlapReport(t, c, "release", t1)
}

func mustRuns(t *testing.T, c *cluster.Cluster) []cluster.Run {
	t.Helper()
	runs, err := c.Runs()
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

// TestWorkersBucketDeleted: the workers bucket is deleted under a running node. Its worker
// stops (its claim is gone), the node recreates the bucket itself and runs the worker again
// with a larger token: tokens never go backwards.
func TestWorkersBucketDeleted(t *testing.T) {
	t.Parallel()
	c := startCluster(t, cluster.Options{Nodes: 1, TTL: 2 * time.Second, Workers: recorded("w")})
	settle(t, c, "w")
	r := liveRun(t, c, "w", takeoverTimeout)
	nc, err := nats.Connect(c.ClientURLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := cluster.MonoNow()
	if err := js.DeleteKeyValue(ctx, c.Namespace()+"_workers"); err != nil {
		t.Fatal(err)
	}
	r2, err := c.WaitRun("w", takeoverTimeout, func(x cluster.Run) bool { return x.Start > t0 })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bucket deleted: token %d → %d, running again after %s", r.Token, r2.Token, ms(r2.Start.Sub(t0)))
	if r2.Token <= r.Token {
		t.Errorf("token went backwards: %d after %d", r2.Token, r.Token)
	}
	if err := c.WaitReady(takeoverTimeout); err != nil {
		t.Error(err)
	}
	overlapReport(t, c, "bucket deleted", t0)
}
