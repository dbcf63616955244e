package embedded

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is a running embedded nats-server.
type Server struct {
	cfg  Config
	log  *slog.Logger
	nlog *natsLogger
	ns   *server.Server

	clientHost string
	clientPort int // as configured (-1: random) until bound

	clustered bool
	self      selfAddr
	expected  int // servers the JetStream cluster is meant to have; 1 when not clustered

	discoverName string
	discoverPort int
	staleAfter   time.Duration

	clientTLS, routeTLS *tls.Config
	auth                *authOptions // from Config.AuthFile

	// Owned by Start and then by the discovery goroutine alone.
	routes routeSet
	dirty  bool // the server's routes lag behind s.routes after a failed reload

	known atomic.Int64             // servers named by the routes, us included
	seeds atomic.Pointer[[]string] // the routes' host:port but ours, for Peers

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closed    chan struct{}
	closeOnce sync.Once
}

// Start runs nats-server in-process and returns once its client port (and
// route port) accept connections. It does not wait for JetStream: call
// WaitJetStream or poll Ready. ctx bounds the start only; the server runs
// until Shutdown. Recovering a large JetStream store happens before the
// ports open and is not interrupted by ctx.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger.With("server", cfg.Name),
		expected:   1,
		staleAfter: max(12*cfg.DiscoverInterval, time.Minute),
		closed:     make(chan struct{}),
		cancel:     func() {},
	}
	s.nlog = &natsLogger{log: s.log.With("component", "nats-server")}
	s.clientHost, s.clientPort, _ = parseListen(cfg.Listen)

	if err := s.setupTLS(); err != nil {
		return nil, err
	}
	if cfg.AuthFile != "" {
		a, err := loadAuthFile(cfg.AuthFile)
		if err != nil {
			return nil, err
		}
		s.auth = a
	}
	if cfg.ClusterListen != "" {
		if err := s.setupCluster(ctx); err != nil {
			return nil, err
		}
	}

	ns, err := server.NewServer(s.options(s.expected))
	if err != nil {
		return nil, fmt.Errorf("embedded: nats-server rejected the options: %w", err)
	}
	ctxLog := context.Background()
	ns.SetLoggerV2(s.nlog, s.log.Enabled(ctxLog, slog.LevelDebug), s.log.Enabled(ctxLog, levelTrace), false)
	s.ns = ns

	s.log.Info("embedded: starting nats-server", "listen", net.JoinHostPort(s.clientHost, strconv.Itoa(s.clientPort)),
		"cluster", s.clusterAddrForLog(), "cluster_size", s.expected, "routes", s.routes.keys(),
		"tls", s.clientTLS != nil, "client_auth", describeAuth(cfg))
	s.nlog.settledAt.Store(time.Now().Add(startupGrace).UnixNano())
	ns.Start()
	if err := s.waitListening(ctx); err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, err
	}
	if a, ok := ns.Addr().(*net.TCPAddr); ok {
		s.clientPort = a.Port
	}

	if s.discoverName != "" {
		dctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		s.goFunc(func() { s.discoverLoop(dctx) })
	}
	return s, nil
}

func (s *Server) setupTLS() error {
	if s.cfg.TLSCert == "" {
		return nil
	}
	var err error
	s.clientTLS, err = server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: s.cfg.TLSCert, KeyFile: s.cfg.TLSKey, CaFile: s.cfg.TLSCA, Verify: s.cfg.VerifyClients,
	})
	if err != nil {
		return fmt.Errorf("embedded: client TLS from TLSCert/TLSKey/TLSCA: %w", err)
	}
	s.routeTLS, err = server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: s.cfg.TLSCert, KeyFile: s.cfg.TLSKey, CaFile: s.cfg.TLSCA, Verify: true,
	})
	if err != nil {
		return fmt.Errorf("embedded: route TLS from TLSCert/TLSKey/TLSCA: %w", err)
	}
	// A route is client and server at once. nats-server's config parser
	// mirrors the CA into RootCAs for routes but GenTLSConfig does not:
	// without this, a route dialling out rejects its peer's certificate.
	s.routeTLS.ClientAuth = tls.RequireAndVerifyClientCert
	s.routeTLS.RootCAs = s.routeTLS.ClientCAs
	return nil
}

func (s *Server) setupCluster(ctx context.Context) error {
	cfg := s.cfg
	s.clustered = true
	host, port, _ := parseListen(cfg.ClusterListen)
	if port < 0 {
		// The port must be known before start: it is part of our own route,
		// which nats-server counts when sizing a new JetStream cluster.
		p, err := freePort(host)
		if err != nil {
			return fmt.Errorf("embedded: picking a route port on %s: %w", host, err)
		}
		port = p
	}
	// Bound all look-ups together: a DNS server that does not answer must
	// not hold up Start once per peer.
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	s.self = newSelfAddr(ctx, cfg.Resolver, host, port)
	s.routes = routeSet{self: s.self.key(), found: map[string]time.Time{}}

	for _, p := range cfg.Peers {
		h, pp, _ := parsePeer(p, port)
		if s.self.is(ctx, cfg.Resolver, h, pp) {
			continue
		}
		k := net.JoinHostPort(h, strconv.Itoa(pp))
		if !slices.Contains(s.routes.static, k) {
			s.routes.static = append(s.routes.static, k)
		}
	}

	if cfg.Discover == "" {
		n := s.routes.count()
		if cfg.ClusterSize > 0 && cfg.ClusterSize != n {
			return invalid("ClusterSize is %d but Peers name %d servers counting this one (%v): list every server in Peers once, or fix ClusterSize", cfg.ClusterSize, n, s.routes.keys())
		}
		if n == 1 {
			return invalid("ClusterListen is set but Peers name no other server: list the cluster's servers in Peers, set Discover, or leave ClusterListen empty for a single node")
		}
		s.expected = n
	} else {
		s.discoverName, s.discoverPort, _ = parseDiscover(cfg.Discover)
		if s.discoverPort == 0 {
			s.discoverPort = port
		}
		s.expected = cfg.ClusterSize
		if s.routeTLS != nil {
			// Discovered routes are IP addresses; verify peers against the
			// service name instead.
			s.routeTLS.ServerName = s.discoverName
		}
		if addrs, err := s.resolve(ctx); err != nil {
			s.log.Info("embedded: discovery lookup failed; will retry", "name", s.discoverName, "err", err)
		} else {
			s.routes.merge(addrs, time.Now())
		}
		if n := s.routes.count(); n > s.expected {
			// Start hands nats-server only ClusterSize routes; the rest
			// follow on the first discovery round.
			s.dirty = true
			s.log.Warn("embedded: discovery found more servers than ClusterSize; check ClusterSize",
				"found", n, "cluster_size", s.expected, "routes", s.routes.keys())
		}
	}
	s.known.Store(int64(s.routes.count()))
	s.noteSeeds()

	if s.expected == 2 {
		s.log.Warn("embedded: a 2-node cluster loses its quorum when either node dies; run 3", "cluster_size", 2)
	}
	return nil
}

// freePort asks the kernel for a free port. Another process may take it
// before nats-server binds it; Start then fails with "address in use".
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// options builds nats-server's options; routes are sized as routeSet.urls
// does.
func (s *Server) options(routes int) *server.Options {
	o := &server.Options{
		ServerName:             s.cfg.Name,
		Host:                   s.clientHost,
		Port:                   s.clientPort,
		NoSigs:                 true,
		JetStream:              true,
		StoreDir:               s.cfg.DataDir,
		DisableJetStreamBanner: true,
		Username:               s.cfg.User,
		Password:               s.cfg.Password,
		Authorization:          s.cfg.Token,
		TLSConfig:              s.clientTLS,
		TLSVerify:              s.cfg.VerifyClients,
	}
	for _, k := range s.cfg.NKeys {
		o.Nkeys = append(o.Nkeys, &server.NkeyUser{Nkey: k})
	}
	if s.auth != nil {
		s.auth.apply(o)
	}
	if s.clustered {
		o.Cluster = server.ClusterOpts{
			Name:      s.cfg.ClusterName,
			Host:      s.self.host,
			Port:      s.self.port,
			TLSConfig: s.routeTLS,
		}
		o.Routes = s.routes.urls(routes)
	}
	return o
}

func (s *Server) waitListening(ctx context.Context) error {
	for {
		if msg := s.nlog.fatalMsg(); msg != "" {
			return fmt.Errorf("embedded: nats-server %q failed to start: %s", s.cfg.Name, msg)
		}
		if s.ns.ReadyForConnections(50 * time.Millisecond) {
			if msg := s.nlog.fatalMsg(); msg != "" {
				return fmt.Errorf("embedded: nats-server %q failed to start: %s", s.cfg.Name, msg)
			}
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("embedded: nats-server %q did not open its ports: %w", s.cfg.Name, err)
		}
	}
}

func (s *Server) goFunc(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

func (s *Server) clusterAddrForLog() string {
	if !s.clustered {
		return ""
	}
	return net.JoinHostPort(s.self.host, strconv.Itoa(s.self.port))
}

// ClientURL is the URL clients on this host use, e.g. nats://127.0.0.1:4222.
func (s *Server) ClientURL() string {
	return (&url.URL{Scheme: "nats", Host: net.JoinHostPort(dialable(s.clientHost), strconv.Itoa(s.clientPort))}).String()
}

// ClusterURL is the route URL of this server, e.g. nats-route://127.0.0.1:6222,
// or "" when it is not clustered.
func (s *Server) ClusterURL() string {
	if !s.clustered {
		return ""
	}
	return (&url.URL{Scheme: "nats-route", Host: s.ClusterAddr()}).String()
}

// ClusterAddr is the route address as HOST:PORT, the form Config.Peers takes,
// or "" when the server is not clustered.
func (s *Server) ClusterAddr() string {
	if !s.clustered {
		return ""
	}
	return s.self.key()
}

// ClusterSize is the number of servers the JetStream cluster is meant to
// have: 1 for a single node.
func (s *Server) ClusterSize() int { return s.expected }

func dialable(host string) string {
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return host
}

// NATS returns the underlying server, for tests and diagnostics (finding the
// JetStream meta or stream leader, stepping one down). Do not shut it down
// directly: use Shutdown.
func (s *Server) NATS() *server.Server { return s.ns }

// Ready reports whether JetStream is usable now: started, and in a cluster a
// meta leader is known. It does not do I/O.
func (s *Server) Ready() bool {
	return s.readyErr() == nil
}

func (s *Server) readyErr() error {
	select {
	case <-s.closed:
		return ErrClosed
	default:
	}
	if !s.ns.JetStreamEnabled() {
		return errors.New("JetStream is not running (see the server log)")
	}
	if !s.ns.JetStreamIsClustered() {
		return nil
	}
	jsz, err := s.ns.Jsz(&server.JSzOptions{})
	if err != nil {
		return fmt.Errorf("JetStream state: %w", err)
	}
	if jsz.Meta == nil || jsz.Meta.Leader == "" {
		found := ""
		if s.discoverName != "" {
			found = fmt.Sprintf(" (discovery of %s has found %d)", s.discoverName, s.known.Load())
		}
		return fmt.Errorf("no JetStream meta leader: a new cluster of %d needs all of them up%s, a running one needs %d",
			s.expected, found, s.expected/2+1)
	}
	return nil
}

// WaitJetStream returns nil once JetStream answers a request through an
// in-process client (in a cluster that needs a meta leader). Each attempt
// has a short timeout, because requests made while there is no leader hang.
// When ctx ends first, the error wraps ErrNotReady and ctx.Err() and says
// what was missing.
func (s *Server) WaitJetStream(ctx context.Context) error {
	const (
		attemptTimeout = time.Second
		pollInterval   = 50 * time.Millisecond
	)
	var nc *nats.Conn
	defer func() {
		if nc != nil {
			nc.Close()
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var last error
	for {
		select {
		case <-ctx.Done():
			if last == nil {
				last = errors.New("not checked yet")
			}
			return fmt.Errorf("%w on %q: %v: %w", ErrNotReady, s.cfg.Name, last, ctx.Err())
		case <-s.closed:
			return ErrClosed
		case <-timer.C:
		}
		last = s.probe(ctx, &nc, attemptTimeout)
		if last == nil {
			return nil
		}
		timer.Reset(pollInterval)
	}
}

func (s *Server) probe(ctx context.Context, nc **nats.Conn, timeout time.Duration) error {
	if err := s.readyErr(); err != nil {
		return err
	}
	if *nc == nil {
		c, err := nats.Connect("", s.clientOptions()...)
		if err != nil {
			return fmt.Errorf("in-process client: %w", err)
		}
		*nc = c
	}
	js, err := jetstream.New(*nc)
	if err != nil {
		return fmt.Errorf("in-process client: %w", err)
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := js.AccountInfo(actx); err != nil {
		return fmt.Errorf("JetStream account info: %w", err)
	}
	return nil
}

func (s *Server) clientOptions() []nats.Option {
	opts := []nats.Option{nats.InProcessServer(s.ns), nats.Name("embedded-readiness"), nats.NoReconnect()}
	if len(s.cfg.ClientAuth) > 0 {
		return append(opts, s.cfg.ClientAuth...)
	}
	switch {
	case s.cfg.Token != "":
		opts = append(opts, nats.Token(s.cfg.Token))
	case s.cfg.User != "":
		opts = append(opts, nats.UserInfo(s.cfg.User, s.cfg.Password))
	}
	return opts
}

// Shutdown stops discovery, then the server, and waits for both. It is safe
// to call more than once and from several goroutines; later calls wait for
// the first to finish.
func (s *Server) Shutdown() {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.cancel()
		s.wg.Wait()
		s.nlog.stopping.Store(true)
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		s.log.Info("embedded: nats-server stopped")
	})
}
