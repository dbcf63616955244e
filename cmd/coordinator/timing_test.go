package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetcoord/coordinator/internal/cluster"
	"github.com/jetcoord/coordinator/internal/config"
	"github.com/jetcoord/coordinator/internal/natstest"
)

// --ttl replaces the TTL only: timings set in the file stay, as its help text says and as
// COORD_TTL does (issue 12, case 8b: --ttl used to discard them).
func TestTTLFlagKeepsFileTimings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("timing:\n  renew_deadline: 8s\n  fence_grace: 6s\n  shutdown_grace: 40s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(t *testing.T, args ...string) (config.Timing, error) {
		t.Helper()
		f := newRunFlags(io.Discard, io.Discard)
		if err := f.fs.Parse(append([]string{"--config", path}, args...)); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.loadConfig()
		return cfg.Timing.Resolve(), err
	}
	want := config.Timing{TTL: config.Duration(20 * time.Second), RenewInterval: config.Duration(4 * time.Second),
		RenewDeadline: config.Duration(8 * time.Second), FenceGrace: config.Duration(6 * time.Second),
		ShutdownGrace: config.Duration(40 * time.Second)}
	t.Run("flag", func(t *testing.T) {
		got, err := load(t, "--ttl", "20s")
		if err != nil || got != want {
			t.Fatalf("--ttl 20s: %+v, %v; want %+v", got, err, want)
		}
	})
	t.Run("env", func(t *testing.T) {
		t.Setenv("COORD_TTL", "20s")
		got, err := load(t)
		if err != nil || got != want {
			t.Fatalf("COORD_TTL=20s: %+v, %v; want %+v", got, err, want)
		}
	})
	// A TTL too short for the file's timings is refused, not silently re-derived.
	t.Run("too short", func(t *testing.T) {
		_, err := load(t, "--ttl", "10s")
		if err == nil || !strings.Contains(err.Error(), "fence_grace") {
			t.Fatalf("--ttl 10s with renew_deadline 8s, fence_grace 6s: %v, want an error naming fence_grace", err)
		}
	})
}

// A job's command is killed before the run lease's TTL when its node is cut off, with
// renew_deadline and fence_grace set in the file (issue 12, case 8a: run leases derived
// their deadline from the TTL alone while the watchdog got the engine's fence_grace, so
// with ttl 4s, renew_deadline 1.6s, fence_grace 1.2s the command died 3.2 + 1.2 = 4.4 s
// after its last renewal, when another node could already have run the tick again).
func TestJobKilledBeforeTTLWithFileTimings(t *testing.T) {
	b := bins(t)
	srv := natstest.Run(t)
	proxy, err := cluster.NewProxy(fmt.Sprintf("127.0.0.1:%d", srv.Port()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	dir := t.TempDir()
	hb := filepath.Join(dir, "heartbeat")
	const ttl = 4 * time.Second
	cfg := fmt.Sprintf("timing:\n  ttl: 4s\n  renew_deadline: 1600ms\n  fence_grace: 1200ms\n"+
		"jobs:\n  - name: stubborn\n    schedule: \"* * * * * *\"\n"+
		"    command: 'trap \"\" TERM; while :; do date +%%s%%N > %s.tmp; mv %s.tmp %s; sleep 0.05; done'\n", hb, hb, hb)
	if _, err := cluster.Start(t, cluster.Options{Nodes: 1, TTL: ttl, Binaries: b, Dir: dir, Config: cfg,
		NATS: []string{proxy.URL()}}); err != nil {
		t.Fatal(err)
	}
	beat := func() (time.Time, bool) {
		s, err := os.ReadFile(hb)
		if err != nil {
			return time.Time{}, false
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(string(s)), 10, 64)
		return time.Unix(0, ns), err == nil
	}
	waitUntil(t, "the job's command to run", func() bool { _, ok := beat(); return ok })

	nc := srv.Connect()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bucket, err := js.KeyValue(ctx, "coord_jobs")
	if err != nil {
		t.Fatal(err)
	}
	type leaseRec struct {
		State   string    `json:"state"`
		Renewed time.Time `json:"renewed"`
	}
	// runLease returns the running run lease of the job, if any.
	runLease := func() (jetstream.KeyValueEntry, leaseRec) {
		keys, err := bucket.ListKeys(ctx)
		if err != nil {
			return nil, leaseRec{}
		}
		for k := range keys.Keys() {
			if !strings.HasSuffix(k, ".run") {
				continue
			}
			e, err := bucket.Get(ctx, k)
			if err != nil {
				continue
			}
			var rec leaseRec
			if json.Unmarshal(e.Value(), &rec) == nil && rec.State == "running" {
				return e, rec
			}
		}
		return nil, leaseRec{}
	}
	// Cut the node off once its run has renewed its lease, then read its last renewal.
	var first uint64
	waitUntil(t, "a renewal of the run lease", func() bool {
		e, _ := runLease()
		switch {
		case e == nil:
			return false
		case first == 0:
			first = e.Revision()
			return false
		}
		return e.Revision() > first
	})
	proxy.Block()
	e, rec := runLease()
	if e == nil {
		t.Fatal("no running run lease in coord_jobs")
	}
	renewed := rec.Renewed

	// The command ignores SIGTERM: it ends only by the watchdog's SIGKILL.
	var last time.Time
	waitUntil(t, "the command to be killed", func() bool {
		b, ok := beat()
		if !ok {
			return false
		}
		if b.Equal(last) && time.Since(b) > time.Second {
			return true
		}
		last = b
		return false
	})
	killed := last.Sub(renewed)
	t.Logf("command killed %v after its last renewal (TTL %v, renew_deadline 1.6s + fence_grace 1.2s = 2.8s)", killed.Round(10*time.Millisecond), ttl)
	if killed >= ttl {
		t.Errorf("the job's command was killed %v after its last renewal, past the TTL %v: another node may run the tick meanwhile", killed, ttl)
	}
}
