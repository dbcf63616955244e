package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// registerStateMetrics adds the stateCollector to the node's registry and creates the
// counters of every known label value at zero, so that rate() and the alert rules see a
// series before the first renewal error or lease loss.
func registerStateMetrics(d *daemon) {
	m := d.metrics
	for _, r := range []string{"won", "conflict"} {
		m.claimAttempts.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "conflict", "error"} {
		m.renewals.WithLabelValues(r)
	}
	for _, r := range []string{"deadline", "lost"} {
		m.leaseLosses.WithLabelValues(r)
	}
	m.reg.MustRegister(stateCollector{d})
}

// stateCollector exports, at each scrape, what the alert rules in deploy/prometheus need
// and the event counters cannot say: which workers this node registers and owns, whether
// it drains, and whether the store answers.
type stateCollector struct{ d *daemon }

var (
	registeredDesc = prometheus.NewDesc("coordinator_worker_registered",
		"1 for each worker this node registers (can run); with coordinator_worker_owned it shows workers that run nowhere.",
		[]string{"worker"}, nil)
	ownedDesc = prometheus.NewDesc("coordinator_worker_owned",
		"1 for each worker this node holds the claim for.", []string{"worker"}, nil)
	drainingDesc = prometheus.NewDesc("coordinator_node_draining",
		"1 while this node drains (coordinator drain): it claims nothing and hands its workers over.", nil, nil)
	readyDesc = prometheus.NewDesc("coordinator_ready",
		"1 when this node can claim (as /readyz).", nil, nil)
	storeUpDesc = prometheus.NewDesc("coordinator_store_up",
		"1 when the workers bucket's stream answered within 2s at this scrape: 0 means no leader, so no quorum for claims and renewals.", nil, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{registeredDesc, ownedDesc, drainingDesc, readyDesc, storeUpDesc} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, on bool, labels ...string) {
		v := 0.0
		if on {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	e := c.d.liveEngine.Load()
	gauge(readyDesc, e != nil && e.Ready())
	if e != nil {
		for _, w := range e.Registered() {
			gauge(registeredDesc, true, w)
			c.d.metrics.failures.WithLabelValues(w) // a zero to rise from: see registerStateMetrics
		}
		for _, w := range e.Owned() {
			gauge(ownedDesc, true, w)
		}
		gauge(drainingDesc, e.Draining())
	}
	if jr := c.d.liveJobs.Load(); jr != nil {
		jr.mu.Lock()
		for name := range jr.jobs {
			for _, r := range []string{"succeeded", "failed"} {
				c.d.metrics.jobRuns.WithLabelValues(name, r)
			}
		}
		jr.mu.Unlock()
	}
	up := false
	if st := c.d.liveStore.Load(); st != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := st.JetStream().Stream(ctx, "KV_"+st.Namespace()+"_workers")
		cancel()
		up = err == nil
	}
	gauge(storeUpDesc, up)
}
