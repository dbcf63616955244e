package main

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/jetcoord/coordinator/internal/config"
)

// reload re-reads the config file on SIGHUP: added workers are registered, removed ones
// stopped and released, changed ones restarted (stopped, released, registered anew); jobs
// likewise. An invalid file is rejected and the running config stays.
func (d *daemon) reload() {
	if d.flags.cfgPath == "" {
		d.log.Info("SIGHUP: no --config file to reload")
		return
	}
	cfg, err := d.flags.loadConfig()
	if err != nil {
		d.log.Error("SIGHUP: config rejected; the running config stays", "file", d.flags.cfgPath, "err", err)
		return
	}
	if fixed := restartOnly(d.cfg, cfg); len(fixed) > 0 {
		d.log.Warn("SIGHUP: these settings change only with a restart; the running values stay",
			"settings", strings.Join(fixed, ", "))
	}
	want := map[string]int{}
	for i, w := range cfg.Workers {
		want[w.Name] = i
	}
	d.mu.Lock()
	have := make(map[string]bool, len(d.workers))
	changed := []string{}
	for name, old := range d.workers {
		have[name] = true
		if i, ok := want[name]; !ok || !reflect.DeepEqual(old, cfg.Workers[i]) {
			changed = append(changed, name)
		}
	}
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(d.cfg.Timing.ShutdownGrace)+5*time.Second)
	defer cancel()
	var added, removed, restarted int
	for _, name := range changed {
		if err := d.engine.Unregister(ctx, name); err != nil {
			d.log.Error("SIGHUP: could not stop worker", "worker", name, "err", err)
		}
		d.runtime.Remove(name)
		d.metrics.failures.DeleteLabelValues(name)
		d.mu.Lock()
		delete(d.workers, name)
		d.mu.Unlock()
		if _, ok := want[name]; ok {
			restarted++
		} else {
			removed++
		}
	}
	for _, w := range cfg.Workers {
		d.mu.Lock()
		_, running := d.workers[w.Name]
		d.mu.Unlock()
		if running {
			continue
		}
		if err := d.addWorker(w); err != nil {
			d.log.Error("SIGHUP: could not add worker", "worker", w.Name, "err", err)
			continue
		}
		if !have[w.Name] {
			added++
		}
	}
	jobsChanged := d.jobs.reload(ctx, cfg.Jobs)
	d.cfg.Workers, d.cfg.Jobs = cfg.Workers, cfg.Jobs
	d.log.Info("SIGHUP: config reloaded", "workers_added", added, "workers_removed", removed,
		"workers_restarted", restarted, "jobs_changed", jobsChanged)
}

// restartOnly lists the settings that differ between the running config and the reloaded
// one but only take effect at start (where the node listens, its namespace, timings, …),
// as "key: old → new". Reload applies workers and jobs only.
func restartOnly(old, cur config.File) []string {
	var out []string
	add := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, fmt.Sprintf("%s: %v → %v", key, a, b))
		}
	}
	add("node.name", old.Node.Name, cur.Node.Name)
	add("node.data", old.Node.Data, cur.Node.Data)
	add("node.listen", old.Node.Listen, cur.Node.Listen)
	add("node.http", old.Node.HTTP, cur.Node.HTTP)
	add("node.weight", old.Node.Weight, cur.Node.Weight)
	add("cluster", old.Cluster, cur.Cluster)
	add("nats.url", old.NATS.URL, cur.NATS.URL)
	if !reflect.DeepEqual(old.NATS, cur.NATS) && old.NATS.URL == cur.NATS.URL {
		out = append(out, "nats: credentials or TLS changed")
	}
	add("namespace", old.Namespace, cur.Namespace)
	add("rebalance_threshold", old.RebalanceThreshold, cur.RebalanceThreshold)
	add("timing.ttl", old.Timing.TTL, cur.Timing.TTL)
	add("timing.renew_interval", old.Timing.RenewInterval, cur.Timing.RenewInterval)
	add("timing.renew_deadline", old.Timing.RenewDeadline, cur.Timing.RenewDeadline)
	add("timing.fence_grace", old.Timing.FenceGrace, cur.Timing.FenceGrace)
	add("timing.shutdown_grace", old.Timing.ShutdownGrace, cur.Timing.ShutdownGrace)
	add("log", old.Log, cur.Log)
	return out
}
