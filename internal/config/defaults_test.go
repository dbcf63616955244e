package config

import (
	"reflect"
	"testing"
	"time"
)

// The defaults are documented in DESIGN.md, doc comments and deploy/coordinator.yaml;
// pinning them here keeps the three from drifting.
func TestDefaultsPinned(t *testing.T) {
	f := Default()
	if f.Node.Name == "" {
		t.Error("Node.Name: want the host name, got empty")
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"Node.Data", f.Node.Data, "./data"},
		{"Node.Listen", f.Node.Listen, "127.0.0.1:4222"},
		{"Node.HTTP", f.Node.HTTP, ""},
		{"Node.Weight", f.Node.Weight, 1},
		{"Cluster.Listen", f.Cluster.Listen, ""},
		{"Cluster.Size", f.Cluster.Size, 0},
		{"NATS.URL", f.NATS.URL, ""},
		{"Namespace", f.Namespace, "coord"},
		{"RebalanceThreshold", f.RebalanceThreshold, 0.1},
		{"Log.Level", f.Log.Level, "info"},
		{"Log.Format", f.Log.Format, "auto"},
		{"Timing.TTL", time.Duration(f.Timing.TTL), 15 * time.Second},
		{"Timing.RenewInterval (unset: derived)", time.Duration(f.Timing.RenewInterval), time.Duration(0)},
		{"Timing.ShutdownGrace", time.Duration(f.Timing.ShutdownGrace), 30 * time.Second},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if len(f.Workers) != 0 || len(f.Jobs) != 0 || len(f.Cluster.Peers) != 0 {
		t.Errorf("Default has workers, jobs or peers: %+v", f)
	}
	if err := f.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

func TestTimingResolve(t *testing.T) {
	for _, c := range []struct {
		name                               string
		in                                 Timing
		ttl, interval, deadline, fence, sg time.Duration
	}{
		{"defaults", Default().Timing, 15 * time.Second, 3 * time.Second, 12 * time.Second, 2500 * time.Millisecond, 30 * time.Second},
		{"zero", Timing{}, 15 * time.Second, 3 * time.Second, 12 * time.Second, 2500 * time.Millisecond, 30 * time.Second},
		{"ttl only", Timing{TTL: Duration(5 * time.Second)}, 5 * time.Second, time.Second, 4 * time.Second, 500 * time.Millisecond, 30 * time.Second},
		{"deadline set", Timing{TTL: Duration(20 * time.Second), RenewDeadline: Duration(15 * time.Second)}, 20 * time.Second, 4 * time.Second, 15 * time.Second, 4500 * time.Millisecond, 30 * time.Second},
		{"all set", Timing{TTL: 10, RenewInterval: 1, RenewDeadline: 5, FenceGrace: 2, ShutdownGrace: 3}, 10, 1, 5, 2, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := c.in.Resolve()
			got := []time.Duration{time.Duration(r.TTL), time.Duration(r.RenewInterval), time.Duration(r.RenewDeadline), time.Duration(r.FenceGrace), time.Duration(r.ShutdownGrace)}
			want := []time.Duration{c.ttl, c.interval, c.deadline, c.fence, c.sg}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("Resolve() = %v, want %v", got, want)
					break
				}
			}
		})
	}
}

func TestItemDefaultsPinned(t *testing.T) {
	w := DefaultWorker()
	if w.Restart != RestartAlways || w.StopSignal.String() != "SIGTERM" || time.Duration(w.StopGrace) != 10*time.Second {
		t.Errorf("DefaultWorker() = %+v", w)
	}
	j := DefaultJob()
	if j.Timezone != "UTC" || j.Overlap != OverlapSkip || j.CatchUp != CatchUpNone || j.CatchUpLimit != 10 ||
		j.RetryLost || j.Timeout != 0 || j.StopSignal.String() != "SIGTERM" || time.Duration(j.StopGrace) != 10*time.Second {
		t.Errorf("DefaultJob() = %+v", j)
	}

	// A file that sets only what is required gets the same defaults.
	f := mustParse(t, `
workers:
  - name: w
    command: [/bin/true]
jobs:
  - name: j
    schedule: "@hourly"
    command: [/bin/true]
`, nil)
	w.Name, w.Command = "w", Command{"/bin/true"}
	j.Name, j.Schedule, j.Command = "j", "@hourly", Command{"/bin/true"}
	if got := f.Workers[0]; !reflect.DeepEqual(got, w) {
		t.Errorf("parsed worker = %+v, want %+v", got, w)
	}
	if got := f.Jobs[0]; !reflect.DeepEqual(got, j) {
		t.Errorf("parsed job = %+v, want %+v", got, j)
	}
}
