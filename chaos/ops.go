package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// Timings of the operator faults, in TTLs so that -ttl scales them. A slow worker's stop
// outlives shutdown_grace by a TTL; the supervisor's SIGKILL (stop_grace) comes later still,
// so the recorder decides when the copy ends.
func shutdownGraceFor(ttl time.Duration) time.Duration { return roundD(ttl * 3 / 2) }
func slowStopDelay(ttl time.Duration) time.Duration    { return roundD(ttl * 5 / 2) }
func slowStopGrace(ttl time.Duration) time.Duration    { return roundD(ttl * 5) }

// bucketRecreateWait is how long the nodes get to recreate a deleted workers bucket before
// the suite restarts them, as an operator would.
func bucketRecreateWait(ttl time.Duration) time.Duration { return 3*ttl + 5*time.Second }

// errNoEffect marks an operator fault whose commands were all refused: it failed, but
// changed nothing, so it is no problem of the run.
var errNoEffect = errors.New("refused")

func roundD(d time.Duration) time.Duration { return d.Round(100 * time.Millisecond) }

// slowWorkers are the workers whose stop outlives shutdown_grace: every fifth from w02 on.
func slowWorkers(workers []string) map[string]bool {
	out := map[string]bool{}
	for i, w := range workers {
		if i%5 == 2 {
			out[w] = true
		}
	}
	if len(out) == 0 && len(workers) > 0 {
		out[workers[len(workers)-1]] = true
	}
	return out
}

// pickWorkers chooses the workers of an operator fault from its Pick, so that a seed
// replays the same choice.
func (s *suite) pickWorkers(f *Fault) []string {
	rng := rand.New(rand.NewPCG(f.Pick, 0x6f7073))
	switch f.Kind {
	case FaultBucketDelete, FaultDrain:
		return nil
	case FaultSlowStop:
		var slow []string
		for _, w := range s.workers {
			if s.cfg.Slow[w] {
				slow = append(slow, w)
			}
		}
		return []string{slow[rng.IntN(len(slow))]}
	}
	var out []string
	for _, i := range rng.Perm(len(s.workers))[:min(f.Count, len(s.workers))] {
		out = append(out, s.workers[i])
	}
	return out
}

// injectOp performs an operator fault through node n: its config, its signals, its NATS
// client port, or the coordinator's operator commands pointed at it.
func (s *suite) injectOp(ctx context.Context, f *Fault, n *cluster.Node) error {
	switch f.Kind {
	case FaultReload:
		return s.reload(ctx, f)
	case FaultSlowStop, FaultRelease:
		return s.release(ctx, f, n)
	case FaultDrain:
		return s.drain(ctx, f, n)
	case FaultKVDelete, FaultKVPurge, FaultMarker:
		return s.touchClaims(ctx, f, n)
	case FaultBucketDelete:
		return s.deleteBucket(ctx, f, n)
	}
	return fmt.Errorf("unknown operator fault %q", f.Kind)
}

// reload changes the workers' environment in the config file and sends SIGHUP to every
// node, then waits until each one logged that it reloaded.
func (s *suite) reload(ctx context.Context, f *Fault) error {
	nodes := s.c.Nodes()
	offsets := make([]int64, len(nodes))
	for i, n := range nodes {
		offsets[i] = fileSize(n.LogPath())
	}
	s.cfgMu.Lock()
	for _, w := range f.Workers {
		s.cfg.Gen[w]++
	}
	err := s.c.WriteConfig(s.cfg.YAML())
	s.cfgMu.Unlock()
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if err := n.Reload(); err != nil {
			return err
		}
	}
	// A node that must stop a slow worker reloads only after shutdown_grace.
	timeout := s.cfg.ShutdownGrace + s.cfg.StopDelay + 15*time.Second
	deadline := time.Now().Add(timeout)
	var late []string
	for i, n := range nodes {
		err := poll(ctx, max(time.Until(deadline), 0), func() bool { return logHas(n.LogPath(), offsets[i], "SIGHUP: config reloaded") })
		if err != nil && ctx.Err() == nil {
			late = append(late, n.Name())
		}
	}
	if len(late) > 0 {
		return fmt.Errorf("%s did not log \"SIGHUP: config reloaded\" within %v", strings.Join(late, ", "), timeout)
	}
	f.Note = fmt.Sprintf("CHAOS_GEN of %s changed; every node reloaded", strings.Join(f.Workers, ","))
	return nil
}

// release runs `coordinator release W` for each of the fault's workers at once.
func (s *suite) release(ctx context.Context, f *Fault, n *cluster.Node) error {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed []string
	for _, w := range f.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := n.CLI(cctx, "release", w); err != nil {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("%s: %v", w, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	f.Note = fmt.Sprintf("%d of %d released", len(f.Workers)-len(failed), len(f.Workers))
	for _, e := range failed {
		s.harnessLog("fault #%d: %s", f.N, e)
	}
	if len(failed) == len(f.Workers) {
		return fmt.Errorf("%w: no release went through: %s", errNoEffect, strings.Join(failed, "; "))
	}
	return nil
}

// drain runs `coordinator drain NODE`, waits Hold and undoes it, retrying the undo: a node
// left drained would change every later fault.
func (s *suite) drain(ctx context.Context, f *Fault, n *cluster.Node) error {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := n.CLI(cctx, "drain", n.Name()); err != nil {
		return err
	}
	sleep(ctx, f.Hold)
	var last error
	err := poll(ctx, 30*time.Second, func() bool {
		_, last = n.CLI(cctx, "drain", "--undo", n.Name())
		return last == nil
	})
	if err != nil {
		return fmt.Errorf("drain --undo %s: %w (last: %v)", n.Name(), err, last)
	}
	f.Note = "drained, then undone"
	return nil
}

// touchClaims deletes or purges the fault's workers' claims, or writes the server's expiry
// marker on them, as `nats kv del`, `nats kv purge` or a stream leader whose clock runs
// ahead would. Workers without a claim at the moment are left alone.
func (s *suite) touchClaims(ctx context.Context, f *Fault, n *cluster.Node) error {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	nc, js, err := connect(n)
	if err != nil {
		return err
	}
	defer nc.Close()
	bucket := s.c.Namespace() + "_workers"
	kv, err := js.KeyValue(cctx, bucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", bucket, err)
	}
	var markerTTL time.Duration
	if f.Kind == FaultMarker {
		st, err := js.Stream(cctx, s.c.WorkersStream())
		if err != nil {
			return fmt.Errorf("stream %s: %w", s.c.WorkersStream(), err)
		}
		markerTTL = st.CachedInfo().Config.SubjectDeleteMarkerTTL
	}
	var done, none []string
	for _, w := range f.Workers {
		e, err := kv.Get(cctx, w)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			none = append(none, w)
			continue
		}
		if err != nil {
			return fmt.Errorf("get %s: %w", w, err)
		}
		switch f.Kind {
		case FaultKVDelete:
			err = kv.Delete(cctx, w)
		case FaultKVPurge:
			err = kv.Purge(cctx, w)
		case FaultMarker:
			err = publishMarker(cctx, js, bucket, w, markerTTL)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", f.Kind, w, err)
		}
		done = append(done, fmt.Sprintf("%s@%d", w, e.Revision()))
	}
	f.Note = fmt.Sprintf("claims hit: %s", strings.Join(done, " "))
	if len(none) > 0 {
		f.Note += fmt.Sprintf("; no claim: %s", strings.Join(none, " "))
	}
	if len(done) == 0 {
		f.Note = "no claim to hit: " + strings.Join(none, " ")
	}
	return nil
}

// publishMarker writes on the claim's subject what nats-server writes when a per-message
// TTL expires the last message of a subject (fileStore.handleRemovalOrSdm, v2.15): a
// message without data whose headers are Nats-Marker-Reason: MaxAge, Nats-TTL (the
// bucket's marker TTL) and Nats-Rollup: sub. A KV watcher decodes it as a purge.
func publishMarker(ctx context.Context, js jetstream.JetStream, bucket, key string, ttl time.Duration) error {
	m := nats.NewMsg("$KV." + bucket + "." + key)
	m.Header.Set(jetstream.MarkerReasonHeader, "MaxAge")
	if ttl > 0 {
		m.Header.Set(jetstream.MsgTTLHeader, ttl.String())
	}
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	_, err := js.PublishMsg(ctx, m)
	return err
}

// deleteBucket deletes the workers bucket and gives the nodes bucketRecreateWait to make
// it again. If they do not, that is a problem, and the suite restarts the nodes one by
// one (an operator's remedy) until the cluster recovers, so that the run goes on.
func (s *suite) deleteBucket(ctx context.Context, f *Fault, n *cluster.Node) error {
	nc, js, err := connect(n)
	if err != nil {
		return err
	}
	bucket := s.c.Namespace() + "_workers"
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err = js.DeleteKeyValue(cctx, bucket)
	cancel()
	nc.Close()
	if err != nil {
		return fmt.Errorf("delete bucket %s: %w", bucket, err)
	}
	t0 := time.Now()
	wait := bucketRecreateWait(s.opts.ttl)
	if err := s.waitRecovered(ctx, wait); err == nil {
		f.Note = fmt.Sprintf("the nodes recreated %s after %v", bucket, time.Since(t0).Round(100*time.Millisecond))
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	ready := 0
	for _, x := range s.c.Nodes() {
		if x.Ready() {
			ready++
		}
	}
	s.problem("fault %s: the nodes did not recreate %s within %v (/readyz 200 on %d of %d nodes meanwhile); restarting them one by one", f, bucket, wait, ready, s.c.Len())
	var restarted []string
	nodes := s.c.Nodes()
	for k := range nodes {
		x := nodes[(f.Node+k)%len(nodes)]
		if _, err := x.Term(); err != nil {
			s.printf("  %s: %v; killing it", x.Name(), err)
			if err := x.Kill(); err != nil {
				return err
			}
		}
		if err := x.Start(); err != nil {
			return err
		}
		restarted = append(restarted, x.Name())
		if err := s.waitRecovered(ctx, 30*time.Second); err == nil {
			break
		}
	}
	f.Note = fmt.Sprintf("not recreated within %v; restarted %s", wait, strings.Join(restarted, ", "))
	return nil
}

func connect(n *cluster.Node) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(n.ClientURL(), nats.Name("chaos-operator"), nats.Timeout(2*time.Second),
		nats.MaxReconnects(0), nats.NoCallbacksAfterClientClose())
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", n.ClientURL(), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logHas reports whether the log at path, from byte offset on, has a record whose msg is msg.
func logHas(path string, offset int64, msg string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return false
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return false
	}
	return strings.Contains(string(data), `"msg":"`+msg+`"`)
}
