package main

import (
	"context"
	"reflect"
	"time"
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
