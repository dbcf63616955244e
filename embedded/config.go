package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Defaults applied by Start to zero fields and returned by DefaultConfig.
const (
	DefaultListen           = "127.0.0.1:4222"
	DefaultClusterName      = "coord"
	DefaultDiscoverInterval = 5 * time.Second
)

// Config describes one embedded nats-server.
type Config struct {
	// Name is the server name and should equal the node name. Required; it
	// must be unique in the cluster, because JetStream places replicas by it.
	Name string

	// DataDir holds the JetStream store. Required. Keep it across restarts:
	// a node that loses it rejoins as a new JetStream peer.
	DataDir string

	// Listen is the client address, HOST:PORT. Default "127.0.0.1:4222". An
	// empty host means 127.0.0.1, so that nothing is exposed by accident; use
	// 0.0.0.0 to serve other machines. Port 0 or -1 picks a free port.
	Listen string

	// ClusterListen is the route address, HOST:PORT. Empty means a single
	// node without clustering. An empty host means 127.0.0.1. Port 0 or -1
	// picks a free port before the server starts (useful in tests only: peers
	// must know the port).
	ClusterListen string

	// ClusterName must be the same on all servers of one cluster. Default
	// "coord".
	ClusterName string

	// Peers are the route addresses (HOST, HOST:PORT or
	// nats-route://HOST:PORT; the port defaults to ClusterListen's) of the
	// servers of the cluster. This server's own
	// address may be among them: it is recognised and not dialled. Spell each
	// server one way only, since distinct entries count as distinct servers.
	Peers []string

	// Discover is "dns:NAME" or "dns:NAME:PORT": NAME is resolved every
	// DiscoverInterval (for example a Kubernetes headless service) and each
	// address becomes a route at PORT (default: ClusterListen's port).
	// Requires ClusterSize.
	Discover string

	// DiscoverInterval is how often Discover is resolved again. Default 5s.
	// Shorter finds peers sooner at the cost of more DNS queries.
	DiscoverInterval time.Duration

	// ClusterSize is the number of JetStream servers the cluster is meant to
	// have; a new cluster elects its first JetStream leader only when all of
	// them are up. Required with Discover. Without Discover it defaults to
	// the number of distinct Peers counting this server, and if set it must
	// equal that number.
	ClusterSize int

	// Resolver looks up Discover names and Peers host names. Default
	// net.DefaultResolver.
	Resolver Resolver

	// TLSCert and TLSKey (PEM files) turn on TLS for clients and routes.
	// Routes then use mutual TLS, so the certificate must be valid for both
	// server and client authentication, and for the hosts in Peers (with
	// Discover: for NAME). TLSCA verifies peers' certificates; without it
	// the system roots do.
	TLSCert, TLSKey, TLSCA string

	// VerifyClients requires every client to present a certificate that
	// TLSCA signed (mutual TLS on the client port). It counts as client
	// authentication. In-process clients are exempt.
	VerifyClients bool

	// User and Password, or Token, are required from clients. Routes are
	// not authenticated by these: routes use mutual TLS (TLSCert).
	User, Password, Token string

	// NKeys are public user nkeys (U…) allowed to connect; each proves it
	// holds the matching seed. They cannot be combined with User/Password,
	// Token or AuthFile (nats-server would ignore the others).
	NKeys []string

	// AuthFile is a nats-server configuration file whose authorization { }
	// and accounts { } blocks (and no_auth_user, system_account) are used
	// as they are: users, passwords, nkeys, tokens, permissions and accounts
	// in nats-server's own syntax. Any other setting in it is refused. An
	// account that the coordinator uses needs "jetstream: enabled". It
	// replaces User, Password, Token and NKeys.
	AuthFile string

	// ClientAuth are the nats.go options with which in-process clients (the
	// readiness probe of WaitJetStream) authenticate. Default: User and
	// Password, or Token; none with AuthFile (its no_auth_user, if any).
	// Required with NKeys.
	ClientAuth []nats.Option

	// Insecure allows a client port on a non-loopback address without
	// client authentication, and a route port on a non-loopback address
	// without TLS. Without it Validate refuses both, so that nothing is
	// exposed by accident.
	Insecure bool

	// Logger receives nats-server's log. Route connect and reconnect chatter
	// is logged at Debug. Default slog.Default().
	Logger *slog.Logger
}

// Resolver is the part of *net.Resolver used for discovery.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// DefaultConfig returns a single-node configuration with all defaults set;
// Name and DataDir remain to be filled in.
func DefaultConfig() Config {
	return Config{
		Listen:           DefaultListen,
		ClusterName:      DefaultClusterName,
		DiscoverInterval: DefaultDiscoverInterval,
	}
}

func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.ClusterName == "" {
		c.ClusterName = DefaultClusterName
	}
	if c.DiscoverInterval == 0 {
		c.DiscoverInterval = DefaultDiscoverInterval
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports the first problem in c. Zero fields that have defaults
// are accepted. Errors wrap ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.Name == "" {
		return invalid("Name is empty: set the node name (e.g. the host name)")
	}
	if strings.ContainsFunc(c.Name, isSpace) {
		return invalid("Name %q contains white space: use letters, digits, '-', '_' or '.'", c.Name)
	}
	if c.DataDir == "" {
		return invalid("DataDir is empty: set a directory for the JetStream store")
	}
	if _, _, err := parseListen(c.Listen); err != nil {
		return invalid("Listen %q: %v", c.Listen, err)
	}
	if strings.ContainsFunc(c.ClusterName, isSpace) {
		return invalid("ClusterName %q contains white space: use letters, digits, '-', '_' or '.'", c.ClusterName)
	}
	if c.ClusterSize < 0 {
		return invalid("ClusterSize %d is negative: use 0 (count Peers) or the number of servers", c.ClusterSize)
	}
	if c.DiscoverInterval < 0 {
		return invalid("DiscoverInterval %v is negative", c.DiscoverInterval)
	}

	if c.ClusterListen == "" {
		switch {
		case len(c.Peers) > 0:
			return invalid("Peers are set but ClusterListen is empty: set ClusterListen (e.g. 127.0.0.1:6222) to form a cluster")
		case c.Discover != "":
			return invalid("Discover is set but ClusterListen is empty: set ClusterListen (e.g. 0.0.0.0:6222) to form a cluster")
		case c.ClusterSize > 1:
			return invalid("ClusterSize is %d but ClusterListen is empty: set ClusterListen to form a cluster", c.ClusterSize)
		}
	} else {
		_, routePort, err := parseListen(c.ClusterListen)
		if err != nil {
			return invalid("ClusterListen %q: %v", c.ClusterListen, err)
		}
		if c.ClusterSize == 1 {
			return invalid("ClusterSize is 1 but ClusterListen is set: leave ClusterListen empty for a single node")
		}
		if routePort <= 0 {
			routePort = 0 // unknown until Start picks one
		}
		for _, p := range c.Peers {
			if _, _, err := parsePeer(p, routePort); err != nil {
				return invalid("peer %q: %v", p, err)
			}
		}
		if c.Discover != "" {
			_, port, err := parseDiscover(c.Discover)
			if err != nil {
				return invalid("Discover %q: %v", c.Discover, err)
			}
			if port == 0 && routePort == 0 {
				return invalid("Discover %q has no port and ClusterListen's port is random: give the route port, e.g. dns:%s:6222", c.Discover, strings.TrimPrefix(c.Discover, "dns:"))
			}
			if c.ClusterSize == 0 {
				return invalid("Discover needs ClusterSize (the number of servers, e.g. the StatefulSet's replicas) so that a new cluster waits for all of them before starting JetStream")
			}
		}
	}

	if (c.TLSCert == "") != (c.TLSKey == "") {
		return invalid("TLSCert and TLSKey must be set together")
	}
	if c.TLSCA != "" && c.TLSCert == "" {
		return invalid("TLSCA is set without TLSCert and TLSKey: the server needs its own certificate to use TLS")
	}
	if c.Token != "" && (c.User != "" || c.Password != "") {
		return invalid("Token and User/Password are both set: use one way of client authentication")
	}
	if (c.User == "") != (c.Password == "") {
		return invalid("User and Password must be set together")
	}
	if c.VerifyClients && c.TLSCA == "" {
		return invalid("VerifyClients needs TLSCA: the CA that signs the client certificates")
	}
	if len(c.NKeys) > 0 && (c.User != "" || c.Token != "") {
		return invalid("NKeys and User/Password or Token are both set: use one way of client authentication (or AuthFile for several users)")
	}
	if c.AuthFile != "" && (c.User != "" || c.Token != "" || len(c.NKeys) > 0) {
		return invalid("AuthFile and User/Password, Token or NKeys are all set: put every user in AuthFile's authorization block")
	}
	if len(c.NKeys) > 0 && len(c.ClientAuth) == 0 {
		return invalid("NKeys is set but ClientAuth is empty: give the nats.go option (nats.Nkey or nats.NkeyOptionFromSeed) with which the in-process readiness client authenticates")
	}
	for _, k := range c.NKeys {
		if !nkeys.IsValidPublicUserKey(k) {
			return invalid("NKeys: %q is not a public user nkey (U…, 56 characters)", k)
		}
	}
	if c.Insecure {
		return nil
	}
	if host, _, _ := parseListen(c.Listen); !IsLoopback(host) && !c.hasClientAuth() {
		return invalid("Listen %q is reachable from other machines but clients need no authentication: set User and Password, Token, NKeys, AuthFile or VerifyClients, listen on 127.0.0.1, or set Insecure to allow it", c.Listen)
	}
	if c.ClusterListen != "" {
		if host, _, _ := parseListen(c.ClusterListen); !IsLoopback(host) && c.TLSCert == "" {
			return invalid("ClusterListen %q is reachable from other machines without TLS, so any server could join the cluster: set TLSCert, TLSKey and TLSCA (routes then use mutual TLS), listen on 127.0.0.1, or set Insecure to allow it", c.ClusterListen)
		}
	}
	if c.ClusterListen != "" && c.TLSCert != "" && c.TLSCA == "" {
		return invalid("TLSCert is set for a cluster but TLSCA is not: routes would accept any certificate a public CA signed — set TLSCA to the cluster's own CA, or set Insecure to allow it")
	}
	return nil
}

func (c Config) hasClientAuth() bool {
	return c.User != "" || c.Token != "" || len(c.NKeys) > 0 || c.AuthFile != "" || c.VerifyClients
}

// IsLoopback reports whether host (from HOST:PORT; "" means 127.0.0.1 here)
// is reachable from this machine only: empty, "localhost" or a loopback IP.
func IsLoopback(host string) bool {
	if host == "" || strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

func isSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }

// parseListen splits HOST:PORT; an empty host becomes 127.0.0.1 and ports 0
// and -1 both mean "random" (returned as -1).
func parseListen(s string) (host string, port int, err error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("want HOST:PORT, e.g. 127.0.0.1:4222 (%v)", err)
	}
	port, err = strconv.Atoi(portStr)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number from 1 to 65535 (0 or -1 for a random port)", portStr)
	}
	if port == 0 {
		port = -1
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return host, port, nil
}

// parsePeer accepts HOST, HOST:PORT or nats-route://HOST:PORT. defPort 0
// means the port is not known yet and must be given explicitly.
func parsePeer(s string, defPort int) (host string, port int, err error) {
	if s == "" {
		return "", 0, fmt.Errorf("empty entry")
	}
	hp := s
	if i := strings.Index(s, "://"); i >= 0 {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return "", 0, fmt.Errorf("want HOST:PORT or nats-route://HOST:PORT")
		}
		if u.Scheme != "nats-route" && u.Scheme != "nats" {
			return "", 0, fmt.Errorf("scheme %q: use nats-route:// or plain HOST:PORT", u.Scheme)
		}
		hp = u.Host
	}
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		// No port: the whole entry is the host.
		h, p = strings.Trim(hp, "[]"), ""
	}
	if h == "" {
		return "", 0, fmt.Errorf("host is empty")
	}
	if p == "" {
		if defPort <= 0 {
			return "", 0, fmt.Errorf("no port and ClusterListen's port is random: write HOST:PORT")
		}
		return h, defPort, nil
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number from 1 to 65535", p)
	}
	return h, port, nil
}

// parseDiscover parses "dns:NAME" or "dns:NAME:PORT"; port 0 means "use the
// route port".
func parseDiscover(s string) (name string, port int, err error) {
	rest, ok := strings.CutPrefix(s, "dns:")
	if !ok {
		return "", 0, fmt.Errorf(`want "dns:NAME" or "dns:NAME:PORT", e.g. dns:coord-headless.default.svc.cluster.local`)
	}
	name = rest
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		name = rest[:i]
		port, err = strconv.Atoi(rest[i+1:])
		if err != nil || port < 1 || port > 65535 {
			return "", 0, fmt.Errorf("port %q is not a number from 1 to 65535", rest[i+1:])
		}
	}
	if !validHostName(name) {
		return "", 0, fmt.Errorf("%q is not a DNS name (letters, digits, '-', '_' and '.')", name)
	}
	return name, port, nil
}

func validHostName(s string) bool {
	if s == "" || len(s) > 253 || strings.HasPrefix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}
