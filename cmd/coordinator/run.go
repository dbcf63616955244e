package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetcoord/coordinator/embedded"
	"github.com/jetcoord/coordinator/internal/config"
	"github.com/jetcoord/coordinator/kv"
	"github.com/jetcoord/coordinator/ownership"
	"github.com/jetcoord/coordinator/supervise"
)

// runFlags are the daemon's flags; each one set on the command line overrides the file.
type runFlags struct {
	cmd      *cmdline
	fs       *flag.FlagSet
	cfgPath  string
	name     string
	data     string
	listen   string
	http     string
	weight   int
	clListen string
	peers    string
	discover string
	size     int
	replicas int
	ttl      time.Duration
	logLevel string
	logFmt   string
	conn     natsFlags
	sec      securityFlags
}

// securityFlags secure the embedded server and the HTTP endpoints.
type securityFlags struct {
	tlsCert, tlsKey, tlsCA string
	verifyClients          bool
	authFile               string
	httpToken              string
	insecure               bool
}

func newRunFlags(stdout, stderr io.Writer) *runFlags {
	c := newCmd("run", "[--config FILE] [flags]", "Run the daemon: a node that claims, runs and hands over workers and cron jobs.\n"+
		"Defaults < COORD_* environment < the config file < flags.", stdout, stderr)
	f := &runFlags{cmd: c, fs: c.FlagSet}
	fs := f.fs
	fs.StringVar(&f.cfgPath, "config", "", "YAML config file (workers, jobs, cluster settings)")
	fs.StringVar(&f.name, "name", "", "node name (default: host name); also the embedded server's name")
	fs.StringVar(&f.data, "data", "", "embedded JetStream store directory (default ./data)")
	fs.StringVar(&f.listen, "listen", "", "embedded server's client address (default 127.0.0.1:4222)")
	fs.StringVar(&f.http, "http", "", "serve /healthz, /readyz, /metrics and /status on HOST:PORT")
	fs.IntVar(&f.weight, "weight", 0, "placement weight of this node (default 1)")
	fs.StringVar(&f.clListen, "cluster-listen", "", "embedded clustering: route address HOST:PORT")
	fs.StringVar(&f.peers, "peers", "", "embedded clustering: seed routes, comma separated HOST:PORT")
	fs.StringVar(&f.discover, "discover", "", "embedded clustering: dns:NAME[:PORT] that lists the peers")
	fs.IntVar(&f.size, "cluster-size", 0, "embedded clustering: expected number of servers (default: derived from --peers)")
	fs.IntVar(&f.replicas, "replicas", 0, "replicas of buckets and events stream (default: min(3, cluster size))")
	fs.DurationVar(&f.ttl, "ttl", 0, "lease TTL (default 15s); the other timings follow from it unless set in the file")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (default info)")
	fs.StringVar(&f.logFmt, "log-format", "", "auto, text or json (default auto: colours on a terminal, JSON otherwise)")
	f.conn.register(fs, "")
	fs.StringVar(&f.sec.tlsCert, "server-tls-cert", "", "embedded server: certificate (PEM) for TLS on clients and mutual TLS on routes, e.g. /etc/coordinator/tls/tls.crt")
	fs.StringVar(&f.sec.tlsKey, "server-tls-key", "", "embedded server: key (PEM) of --server-tls-cert")
	fs.StringVar(&f.sec.tlsCA, "server-tls-ca", "", "embedded server: CA (PEM) of the cluster; verifies routes (and client certificates)")
	fs.BoolVar(&f.sec.verifyClients, "server-tls-verify-clients", false, "embedded server: require client certificates signed by --server-tls-ca")
	fs.StringVar(&f.sec.authFile, "server-auth-file", "", "embedded server: nats-server config file with authorization {} / accounts {} blocks")
	fs.StringVar(&f.sec.httpToken, "http-token", "", "bearer token required by /metrics and /status (prefer COORD_HTTP_TOKEN)")
	fs.BoolVar(&f.sec.insecure, "insecure", false, "allow listeners on non-loopback addresses without authentication (trusted networks only)")
	return f
}

// apply overlays the flags that were set on cfg.
func (f *runFlags) apply(cfg *config.File) {
	f.fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "name":
			cfg.Node.Name = f.name
		case "data":
			cfg.Node.Data = f.data
		case "listen":
			cfg.Node.Listen = f.listen
		case "http":
			cfg.Node.HTTP = f.http
		case "weight":
			cfg.Node.Weight = f.weight
		case "cluster-listen":
			cfg.Cluster.Listen = f.clListen
		case "peers":
			cfg.Cluster.Peers = splitList(f.peers)
		case "discover":
			cfg.Cluster.Discover = f.discover
		case "cluster-size":
			cfg.Cluster.Size = f.size
		case "replicas":
			cfg.Cluster.Replicas = f.replicas
		case "ttl":
			// Only the TTL: timings set in the file stay, as with COORD_TTL.
			cfg.Timing.TTL = config.Duration(f.ttl)
		case "log-level":
			cfg.Log.Level = f.logLevel
		case "log-format":
			cfg.Log.Format = f.logFmt
		case "namespace":
			cfg.Namespace = f.conn.namespace
		case "nats":
			cfg.NATS.URL = f.conn.url
		case "creds":
			cfg.NATS.Creds = f.conn.creds
		case "nkey":
			cfg.NATS.NKey = f.conn.nkey
		case "user":
			cfg.NATS.User = f.conn.user
		case "password":
			cfg.NATS.Password = f.conn.password
		case "token":
			cfg.NATS.Token = f.conn.token
		case "tls-ca":
			cfg.NATS.TLS.CA = f.conn.ca
		case "tls-cert":
			cfg.NATS.TLS.Cert = f.conn.cert
		case "tls-key":
			cfg.NATS.TLS.Key = f.conn.key
		case "js-domain":
			cfg.NATS.Domain = f.conn.domain
		case "js-api-prefix":
			cfg.NATS.APIPrefix = f.conn.apiPrefix
		case "server-tls-cert":
			cfg.Server.TLS.Cert = f.sec.tlsCert
		case "server-tls-key":
			cfg.Server.TLS.Key = f.sec.tlsKey
		case "server-tls-ca":
			cfg.Server.TLS.CA = f.sec.tlsCA
		case "server-tls-verify-clients":
			cfg.Server.TLS.VerifyClients = f.sec.verifyClients
		case "server-auth-file":
			cfg.Server.AuthFile = f.sec.authFile
		case "http-token":
			cfg.Node.HTTPToken = f.sec.httpToken
		case "insecure":
			cfg.Insecure = f.sec.insecure
		}
	})
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// loadConfig reads the file (if any) with the environment, then the flags, and validates.
func (f *runFlags) loadConfig() (config.File, error) {
	var cfg config.File
	var err error
	if f.cfgPath != "" {
		cfg, err = config.Load(f.cfgPath)
		if err != nil {
			return cfg, err
		}
	} else {
		cfg = config.Default()
		if err := cfg.ApplyEnv(os.Getenv); err != nil {
			return cfg, err
		}
	}
	f.apply(&cfg)
	cfg.SetDefaults()
	return cfg, cfg.Validate()
}

func runCmd(args []string, stdout, stderr io.Writer) int {
	f := newRunFlags(stdout, stderr)
	pos, code := f.cmd.parse(args)
	if code >= 0 {
		return code
	}
	if len(pos) > 0 {
		return f.cmd.usageError(fmt.Sprintf("unexpected argument %q (flags only)", pos[0]))
	}
	cfg, err := f.loadConfig()
	if err != nil {
		fmt.Fprintf(stderr, "coordinator: %v\n", err)
		return 2
	}
	log, err := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		fmt.Fprintf(stderr, "coordinator: %v\n", err)
		return 2
	}
	d := &daemon{flags: f, cfg: cfg, log: log, stopping: make(chan struct{})}
	if err := d.run(); err != nil {
		log.Error("coordinator stopped", "err", err)
		return 1
	}
	return 0
}

// daemon is one running coordinator node.
type daemon struct {
	flags *runFlags
	cfg   config.File
	log   *slog.Logger

	srv     *embedded.Server
	nc      *nats.Conn
	store   *kv.Store
	engine  *ownership.Engine
	metrics *promMetrics
	http    *httpServer
	ctl     *control
	runtime *ownership.Runtime
	// spares keeps watchdogs started ahead for the next supervised commands (supervise.Spares).
	spares *supervise.Spares
	// stopping is closed when shutdown begins: control requests that wait give up.
	stopping     chan struct{}
	stoppingOnce sync.Once

	mu      sync.Mutex
	workers map[string]config.Worker // registered supervised commands, by name
	jobs    *jobRunner

	// For the HTTP handlers, which serve before the store and engine exist.
	liveEngine atomic.Pointer[ownership.Engine]
	liveStore  atomic.Pointer[kv.Store]
	liveJobs   atomic.Pointer[jobRunner]
	liveServer atomic.Pointer[embedded.Server]
}

func (d *daemon) ownershipConfig() ownership.Config {
	t := d.cfg.Timing
	return ownership.Config{
		TTL:           time.Duration(t.TTL),
		RenewInterval: time.Duration(t.RenewInterval),
		RenewDeadline: time.Duration(t.RenewDeadline),
		FenceGrace:    time.Duration(t.FenceGrace),
		ShutdownGrace: time.Duration(t.ShutdownGrace),

		RebalanceThreshold: d.cfg.RebalanceThreshold,
	}
}

func (d *daemon) run() error {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	// Signals during start-up: the first SIGTERM/SIGINT cancels, a second one exits.
	startDone := make(chan struct{})
	go func() {
		n := 0
		for {
			select {
			case <-startDone:
				return
			case s := <-sigs:
				if s == syscall.SIGHUP {
					continue
				}
				if n++; n > 1 {
					os.Exit(1)
				}
				stop()
			}
		}
	}()
	err := d.start(ctx)
	close(startDone)
	if err != nil {
		d.shutdown()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	d.log.Info("coordinator running", "node", d.cfg.Node.Name, "namespace", d.cfg.Namespace,
		"nats", d.nc.ConnectedUrlRedacted(), "workers", len(d.cfg.Workers), "jobs", len(d.cfg.Jobs),
		"ttl", time.Duration(d.cfg.Timing.TTL).String())

	for s := range sigs {
		if s == syscall.SIGHUP {
			d.reload()
			continue
		}
		d.log.Info("shutting down: stopping workers and releasing claims (signal again to exit at once)", "signal", s.String())
		go func() {
			for s := range sigs {
				if s != syscall.SIGHUP {
					d.log.Warn("second signal: exiting now; supervised commands are killed by their watchdogs")
					os.Exit(1)
				}
			}
		}()
		break
	}
	d.shutdown()
	return nil
}

// start brings up NATS (embedded or external), the store and the engine. It keeps trying
// until ctx ends when NATS or JetStream is not there yet.
func (d *daemon) start(ctx context.Context) error {
	cfg := d.cfg
	d.runtime = ownership.NewRuntime()
	d.metrics = newPromMetrics(d.runtime)
	// HTTP first: /healthz answers while the cluster forms; /readyz says when it can claim.
	if cfg.Node.HTTP != "" {
		h, err := startHTTP(cfg.Node.HTTP, d)
		if err != nil {
			return err
		}
		d.http = h
	}
	replicas := 1
	if cfg.NATS.URL == "" {
		ec := embedded.DefaultConfig()
		ec.Name = cfg.Node.Name
		ec.DataDir = cfg.Node.Data
		ec.Listen = cfg.Node.Listen
		ec.ClusterListen = cfg.Cluster.Listen
		ec.Peers = cfg.Cluster.Peers
		ec.Discover = cfg.Cluster.Discover
		ec.ClusterSize = cfg.Cluster.Size
		ec.Logger = d.log
		auth, err := embeddedAuth(&ec, cfg)
		if err != nil {
			return err
		}
		srv, err := embedded.Start(ctx, ec)
		if err != nil {
			return fmt.Errorf("starting the embedded NATS server: %w", err)
		}
		d.srv = srv
		d.liveServer.Store(srv)
		if size := srv.ClusterSize(); size > 1 {
			replicas = min(3, size)
		}
		// In-process: no TLS to set up for our own connection, but the same credentials as
		// any other client.
		opts := append(auth, nats.InProcessServer(srv.NATS()), nats.Name("coordinator "+cfg.Node.Name),
			nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
		nc, err := nats.Connect("", opts...)
		if err != nil {
			return fmt.Errorf("connecting to the embedded server: %w", err)
		}
		d.nc = nc
		d.log.Info("embedded NATS server started", "client", srv.ClientURL(), "cluster", srv.ClusterURL(),
			"expected_servers", max(1, srv.ClusterSize()))
	} else {
		nc, err := connectDaemon(ctx, cfg.NATS, cfg.Node.Name, d.log)
		if err != nil {
			return err
		}
		d.nc = nc
		replicas = 0 // derived in openStore, once connected
	}
	if cfg.Cluster.Replicas > 0 {
		replicas = cfg.Cluster.Replicas
	}
	if err := d.openStore(ctx, replicas); err != nil {
		return err
	}
	info := ownership.NodeInfo{Version: Version, Weight: cfg.Node.Weight}
	if d.srv != nil {
		info.Addresses = advertisedURLs(d.srv.ClientURL(), cfg.Node.Listen, net.InterfaceAddrs)
	}
	opts := []ownership.Option{ownership.WithLogger(d.log), ownership.WithMetrics(d.metrics), ownership.WithNodeInfo(info)}
	if d.srv != nil {
		opts = append(opts, ownership.WithExpectedMembers(d.srv.ClusterSize()))
	}
	engine, err := ownership.New(d.store, cfg.Node.Name, d.ownershipConfig(), opts...)
	if err != nil {
		return err
	}
	d.engine = engine
	engine.SetRuntime(d.runtime)
	d.liveEngine.Store(engine)
	if on, how := d.drainedBefore(); on {
		// Before Start: the first membership record says so, and placement leaves us out.
		engine.SetDraining(ctx, true)
		d.log.Warn("node is drained: it claims no workers until `coordinator drain --undo "+cfg.Node.Name+"`",
			"marker", d.drainMarkerPath(), "since", how)
	}
	d.spares = supervise.NewSpares()
	if len(cfg.Workers) > 0 {
		// Two: a node taking over a stopping node's workers often gets more than one at
		// once, and a command without a spare waits for a watchdog's start (tens of ms).
		d.spares.Keep("", min(len(cfg.Workers), 2))
	}
	d.workers = map[string]config.Worker{}
	for _, w := range cfg.Workers {
		if err := d.addWorker(w); err != nil {
			return err
		}
	}
	if err := engine.Start(ctx); err != nil {
		return err
	}
	ctl, err := startControl(d)
	if err != nil {
		return err
	}
	d.ctl = ctl
	jr, err := startJobs(ctx, d, cfg.Jobs)
	if err != nil {
		return err
	}
	d.jobs = jr
	d.liveJobs.Store(jr)
	return nil
}

// externalReplicas guesses the replica count for an external NATS: min(3, servers of its
// cluster), 1 for a single server. --replicas overrides it.
func externalReplicas(nc *nats.Conn) int {
	if nc.ConnectedClusterName() == "" {
		return 1
	}
	return min(3, max(1, len(nc.Servers())))
}

// openStore waits for JetStream and opens the buckets, retrying with short per-attempt
// timeouts and a clear log line while nothing answers.
func (d *daemon) openStore(ctx context.Context, replicas int) error {
	var lastLog time.Time
	wait := 100 * time.Millisecond
	for {
		r := replicas
		if r == 0 {
			r = externalReplicas(d.nc)
		}
		// Short attempts: a request sent before JetStream has a leader gets no answer, and a
		// long timeout would keep waiting after the leader appeared.
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := kv.Open(actx, d.nc, kv.Options{Namespace: d.cfg.Namespace, Replicas: r,
			Domain: d.cfg.NATS.Domain, APIPrefix: d.cfg.NATS.APIPrefix})
		cancel()
		if err == nil {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = ensureLogsStream(actx, st.JetStream(), d.cfg.Namespace, r)
			cancel()
		}
		if err == nil {
			d.store = st
			d.liveStore.Store(st)
			d.log.Debug("store open", "replicas", r)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, kv.ErrInvalidName) {
			return err
		}
		if time.Since(lastLog) > 5*time.Second {
			lastLog = time.Now()
			msg := "waiting for JetStream"
			args := []any{"err", err}
			if d.srv != nil && d.srv.ClusterSize() > 1 {
				p := d.srv.Peers()
				msg = fmt.Sprintf("waiting for JetStream: %s; a new cluster starts once all %d are up, a running one needs %d",
					p, p.Expected, p.Expected/2+1)
				args = append(args, "connected", len(p.Connected)+1, "expected", p.Expected, "missing", p.Missing)
			}
			d.log.Warn(msg, args...)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
}

// addWorker registers a supervised command with the engine.
func (d *daemon) addWorker(w config.Worker) error {
	policy := ownership.RestartAlways
	switch w.Restart {
	case config.RestartOnFailure:
		policy = ownership.RestartOnFailure
	case config.RestartNever:
		policy = ownership.RestartNever
	}
	opts := []ownership.WorkerOption{ownership.WithRestart(policy)}
	if len(w.Call) > 0 {
		opts = append(opts, ownership.WithHandler(d.callBridge(w)))
	}
	if err := d.engine.Register(w.Name, d.runtime.WrapProcess(w.Name, policy, d.supervised(w)), opts...); err != nil {
		if !errors.Is(err, ownership.ErrAlreadyRegistered) {
			d.runtime.Remove(w.Name)
		}
		return err
	}
	d.mu.Lock()
	d.workers[w.Name] = w
	d.mu.Unlock()
	return nil
}

// supervised returns the worker function that runs w's command under its watchdog.
func (d *daemon) supervised(w config.Worker) ownership.WorkerFunc {
	return func(ctx context.Context, lease *ownership.Lease) error {
		spec := supervise.Spec{
			Name:       w.Name,
			Command:    w.Command[0],
			Args:       w.Command[1:],
			Env:        append(envList(w.Env), "COORD_WORKER="+w.Name, "COORD_NODE="+d.cfg.Node.Name, fmt.Sprintf("COORD_TOKEN=%d", lease.Token())),
			Dir:        w.Dir,
			StopSignal: syscall.Signal(w.StopSignal),
			StopGrace:  time.Duration(w.StopGrace),
			FenceGrace: d.engine.Config().FenceGrace,
			Logger:     d.outputLogger("worker", w.Name, lease.Token()),
			OnStart:    func(int) { d.runtime.Started(w.Name, lease.Token()) },
			Spares:     d.spares,
		}
		err := supervise.Run(ctx, spec, lease)
		if errors.Is(err, supervise.ErrFenced) {
			d.log.Warn("command stopped by its watchdog at the lease deadline", "worker", w.Name, "token", lease.Token())
		}
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
}

func envList(m map[string]string) []string {
	out := make([]string, 0, len(m)+3)
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// shutdown stops everything in order: jobs and workers (releasing claims), the control and
// HTTP endpoints, the connection, the embedded server.
func (d *daemon) shutdown() {
	d.stoppingOnce.Do(func() { close(d.stopping) })
	if d.jobs != nil {
		d.jobs.close()
	}
	if d.engine != nil {
		stopWatch := d.watchStoreWhileStopping()
		_ = d.engine.Close()
		stopWatch()
	}
	d.spares.Close()
	if d.ctl != nil {
		d.ctl.close()
	}
	d.stepDownStreams()

	if d.http != nil {
		d.http.close()
	}
	if d.nc != nil {
		_ = d.nc.FlushTimeout(2 * time.Second)
		d.nc.Close()
	}
	if d.srv != nil {
		d.srv.Shutdown()
	}
	d.log.Info("coordinator stopped")
}

// advertisedURLs is where other machines reach this node's embedded server. A server
// listening on every interface (0.0.0.0, ::) is dialled on 127.0.0.1 locally, which says
// nothing to an operator looking at a cluster: advertise the non-loopback interface
// addresses instead (what nats-server itself announces to clients).
func advertisedURLs(clientURL, listen string, ifaddrs func() ([]net.Addr, error)) []string {
	host, _, err := net.SplitHostPort(listen)
	if err != nil || (host != "" && !net.ParseIP(host).IsUnspecified()) {
		return []string{clientURL}
	}
	u, err := url.Parse(clientURL)
	if err != nil {
		return []string{clientURL}
	}
	addrs, err := ifaddrs()
	if err != nil {
		return []string{clientURL}
	}
	var out []string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() {
			continue
		}
		if ipn.IP.To4() == nil && net.ParseIP(host).To4() != nil {
			continue // listening on 0.0.0.0: IPv4 only
		}
		out = append(out, (&url.URL{Scheme: u.Scheme, Host: net.JoinHostPort(ipn.IP.String(), u.Port())}).String())
	}
	if len(out) == 0 {
		return []string{clientURL}
	}
	return out
}
