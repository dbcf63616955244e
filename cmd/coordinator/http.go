package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jetcoord/coordinator/cmd/coordinator/web"
	"github.com/jetcoord/coordinator/ownership"
)

// promMetrics implements ownership.Metrics with Prometheus collectors.
type promMetrics struct {
	reg           *prometheus.Registry
	owned         prometheus.Gauge
	claimAttempts *prometheus.CounterVec
	renewals      *prometheus.CounterVec
	renewLatency  prometheus.Histogram
	leaseLosses   *prometheus.CounterVec
	takeovers     prometheus.Counter
	handoffs      prometheus.Counter
	jobRuns       *prometheus.CounterVec
	events        *prometheus.CounterVec
	failures      *prometheus.CounterVec
}

// runtimeCollector exports each registered worker's runtime at scrape time, so that a worker
// that goes away takes its series with it.
type runtimeCollector struct {
	rt       *ownership.Runtime
	running  *prometheus.Desc
	restarts *prometheus.Desc
	failing  *prometheus.Desc
}

func newRuntimeCollector(rt *ownership.Runtime) *runtimeCollector {
	return &runtimeCollector{rt: rt,
		running: prometheus.NewDesc("coordinator_worker_running",
			"1 while this node runs the worker and it has been up for the start grace (1s), else 0.", []string{"worker"}, nil),
		restarts: prometheus.NewDesc("coordinator_worker_restarts_total",
			"Runs of the worker after the first in its current term on this node (resets with a new term).", []string{"worker"}, nil),
		failing: prometheus.NewDesc("coordinator_worker_failing",
			"1 while the worker's last runs failed in a row (a crash loop), else 0.", []string{"worker"}, nil),
	}
}

func (c *runtimeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.running
	ch <- c.restarts
	ch <- c.failing
}

func (c *runtimeCollector) Collect(ch chan<- prometheus.Metric) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, w := range c.rt.Snapshot() {
		ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, b(w.State == ownership.StateRunning), w.Worker)
		ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(w.Restarts), w.Worker)
		ch <- prometheus.MustNewConstMetric(c.failing, prometheus.GaugeValue, b(w.State == ownership.StateFailing), w.Worker)
	}
}

func newPromMetrics(rt *ownership.Runtime) *promMetrics {
	m := &promMetrics{
		reg: prometheus.NewRegistry(),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{Name: "coordinator_workers_owned",
			Help: "Workers this node holds a claim for."}),
		claimAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coordinator_claim_attempts_total",
			Help: "Claim attempts by result (won, conflict)."}, []string{"result"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coordinator_renewals_total",
			Help: "Lease renewals by result (ok, conflict, error)."}, []string{"result"}),
		renewLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "coordinator_renew_latency_seconds",
			Help: "Time a renewal took, successful or not.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		leaseLosses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coordinator_lease_losses_total",
			Help: "Leases lost by reason (deadline, lost)."}, []string{"reason"}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{Name: "coordinator_takeovers_total",
			Help: "Claims taken over after their owner stopped renewing."}),
		handoffs: prometheus.NewCounter(prometheus.CounterOpts{Name: "coordinator_handoffs_total",
			Help: "Workers handed over on purpose (release, drain, rebalance)."}),
		jobRuns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coordinator_job_runs_total",
			Help: "Cron job runs by result."}, []string{"job", "result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coordinator_events_published_total",
			Help: "Lifecycle events published, by kind and type."}, []string{"kind", "type"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coordinator_worker_failures_total",
			Help: "Worker runs that failed (non-zero exit, error, panic), by worker: a crash loop keeps rising."}, []string{"worker"}),
	}
	m.reg.MustRegister(m.owned, m.claimAttempts, m.renewals, m.renewLatency, m.leaseLosses, m.takeovers,
		m.handoffs, m.jobRuns, m.events, m.failures, newRuntimeCollector(rt), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *promMetrics) ClaimAttempt(_ string, won bool) {
	if won {
		m.claimAttempts.WithLabelValues("won").Inc()
	} else {
		m.claimAttempts.WithLabelValues("conflict").Inc()
	}
}

func (m *promMetrics) Renewal(_ string, latency time.Duration, err error) {
	m.renewLatency.Observe(latency.Seconds())
	switch {
	case err == nil:
		m.renewals.WithLabelValues("ok").Inc()
	case isConflict(err):
		m.renewals.WithLabelValues("conflict").Inc()
	default:
		m.renewals.WithLabelValues("error").Inc()
	}
}

func (m *promMetrics) LeaseLost(_ string, reason string) { m.leaseLosses.WithLabelValues(reason).Inc() }
func (m *promMetrics) Takeover(string)                   { m.takeovers.Inc() }
func (m *promMetrics) Handoff(string)                    { m.handoffs.Inc() }
func (m *promMetrics) Owned(delta int)                   { m.owned.Add(float64(delta)) }
func (m *promMetrics) EventPublished(kind, typ string)   { m.events.WithLabelValues(kind, typ).Inc() }
func (m *promMetrics) JobRun(job, result string)         { m.jobRuns.WithLabelValues(job, result).Inc() }
func (m *promMetrics) WorkerFailed(worker string)        { m.failures.WithLabelValues(worker).Inc() }

type httpServer struct {
	srv  *http.Server
	done chan struct{}
	addr string
}

// startHTTP serves /healthz (the process is up), /readyz (the node can claim), /metrics and
// /status (this node's view as JSON).
func startHTTP(addr string, d *daemon) (*httpServer, error) {
	ln, err := net.Listen("tcp", loopbackIfNoHost(addr))
	if err != nil {
		return nil, fmt.Errorf("--http %s: %w", addr, err)
	}
	token := d.cfg.Node.HTTPToken
	// Probes stay open: they say only whether the process is up and can claim.
	private := func(h http.Handler) http.Handler {
		if token == "" {
			return h
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !web.Authorized(r, token) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="coordinator"`)
				http.Error(w, "unauthorized: send Authorization: Bearer <node.http_token>", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	mux := http.NewServeMux()
	mux.Handle("/", d.statusPage())
	registerStateMetrics(d)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		cluster := ""
		if srv := d.liveServer.Load(); srv != nil && srv.ClusterSize() > 1 {
			cluster = "\ncluster: " + srv.Peers().String()
		}
		if e := d.liveEngine.Load(); e == nil || !e.Ready() {
			http.Error(w, "not ready: cannot claim (JetStream not reachable, or the claims cannot be read or watched)"+cluster, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready"+cluster)
	})
	mux.Handle("/metrics", private(promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{})))
	mux.Handle("/status", private(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		st, err := collectStatus(ctx, d.liveStore.Load())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})))
	h := &httpServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, done: make(chan struct{}), addr: ln.Addr().String()}
	go func() {
		defer close(h.done)
		if err := h.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("http server stopped", "err", err)
		}
	}()
	d.log.Info("serving http", "addr", h.addr)
	return h, nil
}

func (h *httpServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = h.srv.Shutdown(ctx)
	<-h.done
}

// loopbackIfNoHost makes ":8080" mean 127.0.0.1:8080, as --listen does: nothing is exposed
// unless a host says so.
func loopbackIfNoHost(addr string) string {
	if host, port, err := net.SplitHostPort(addr); err == nil && host == "" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}
