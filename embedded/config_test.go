package embedded

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	d := DefaultConfig()
	if d.Listen != "127.0.0.1:4222" || d.ClusterName != "coord" || d.DiscoverInterval != 5*time.Second {
		t.Errorf("DefaultConfig() = %+v", d)
	}
	z := Config{}.withDefaults()
	if z.Listen != d.Listen || z.ClusterName != d.ClusterName || z.DiscoverInterval != d.DiscoverInterval ||
		z.Resolver == nil || z.Logger == nil {
		t.Errorf("zero Config with defaults = %+v", z)
	}
	// An empty host means loopback, never all interfaces.
	for _, in := range []string{":4222", ":0", ":-1"} {
		host, _, err := parseListen(in)
		if err != nil || host != "127.0.0.1" {
			t.Errorf("parseListen(%q) host = %q, %v; want 127.0.0.1", in, host, err)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Name: "a", DataDir: "/tmp/x"}
	cluster := ok
	cluster.ClusterListen = "127.0.0.1:6222"
	cluster.Peers = []string{"b:6222", "c"}

	tests := []struct {
		name string
		mod  func(*Config)
		base Config
		want string // substring of the error; "" = valid
	}{
		{"minimal", func(*Config) {}, ok, ""},
		{"cluster", func(*Config) {}, cluster, ""},
		{"discover", func(c *Config) { c.Peers = nil; c.Discover = "dns:coord-headless.default.svc"; c.ClusterSize = 3 }, cluster, ""},
		{"discover with port", func(c *Config) { c.Discover = "dns:coord:7222"; c.ClusterSize = 3 }, cluster, ""},
		{"no name", func(c *Config) { c.Name = "" }, ok, "Name is empty"},
		{"name with space", func(c *Config) { c.Name = "a b" }, ok, "white space"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, ok, "DataDir is empty"},
		{"listen without port", func(c *Config) { c.Listen = "localhost" }, ok, "Listen \"localhost\": want HOST:PORT"},
		{"listen bad port", func(c *Config) { c.Listen = "127.0.0.1:http" }, ok, "port \"http\""},
		{"listen port too big", func(c *Config) { c.Listen = ":70000" }, ok, "port \"70000\""},
		{"bad cluster listen", func(c *Config) { c.ClusterListen = "6222" }, cluster, "ClusterListen \"6222\""},
		{"peers without cluster", func(c *Config) { c.Peers = []string{"b:6222"} }, ok, "ClusterListen is empty"},
		{"discover without cluster", func(c *Config) { c.Discover = "dns:x"; c.ClusterSize = 3 }, ok, "ClusterListen is empty"},
		{"bad peer port", func(c *Config) { c.Peers = []string{"b:x"} }, cluster, "peer \"b:x\""},
		{"empty peer", func(c *Config) { c.Peers = []string{""} }, cluster, "empty entry"},
		{"peer bad scheme", func(c *Config) { c.Peers = []string{"http://b:6222"} }, cluster, "scheme"},
		{"peer without port, random route port", func(c *Config) { c.ClusterListen = "127.0.0.1:-1"; c.Peers = []string{"b"} }, cluster, "no port"},
		{"discover without dns:", func(c *Config) { c.Discover = "coord"; c.ClusterSize = 3 }, cluster, `want "dns:NAME"`},
		{"discover bad name", func(c *Config) { c.Discover = "dns:a b"; c.ClusterSize = 3 }, cluster, "not a DNS name"},
		{"discover empty name", func(c *Config) { c.Discover = "dns:"; c.ClusterSize = 3 }, cluster, "not a DNS name"},
		{"discover bad port", func(c *Config) { c.Discover = "dns:coord:x"; c.ClusterSize = 3 }, cluster, "port \"x\""},
		{"discover without size", func(c *Config) { c.Discover = "dns:coord" }, cluster, "needs ClusterSize"},
		{"discover random port", func(c *Config) { c.ClusterListen = ":0"; c.Peers = nil; c.Discover = "dns:coord"; c.ClusterSize = 3 }, cluster, "has no port"},
		{"size 1 with cluster", func(c *Config) { c.ClusterSize = 1 }, cluster, "ClusterSize is 1"},
		{"size without cluster", func(c *Config) { c.ClusterSize = 3 }, ok, "ClusterListen is empty"},
		{"negative size", func(c *Config) { c.ClusterSize = -1 }, ok, "negative"},
		{"cert without key", func(c *Config) { c.TLSCert = "c.pem" }, ok, "TLSCert and TLSKey"},
		{"ca without cert", func(c *Config) { c.TLSCA = "ca.pem" }, ok, "TLSCA"},
		{"user without password", func(c *Config) { c.User = "u" }, ok, "User and Password"},
		{"token and user", func(c *Config) { c.Token = "t"; c.User = "u"; c.Password = "p" }, ok, "Token and User"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.base
			c.Peers = append([]string(nil), c.Peers...)
			tt.mod(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, want ErrInvalidConfig", err)
			}
			if !strings.HasPrefix(err.Error(), "embedded: ") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParsePeer(t *testing.T) {
	tests := []struct {
		in   string
		host string
		port int
	}{
		{"b:7000", "b", 7000},
		{"b", "b", 6222},
		{"nats-route://b:7000", "b", 7000},
		{"10.0.0.1", "10.0.0.1", 6222},
		{"[::1]:7000", "::1", 7000},
		{"::1", "::1", 6222},
	}
	for _, tt := range tests {
		h, p, err := parsePeer(tt.in, 6222)
		if err != nil || h != tt.host || p != tt.port {
			t.Errorf("parsePeer(%q) = %q, %d, %v; want %q, %d", tt.in, h, p, err, tt.host, tt.port)
		}
	}
}

// Start checks what Validate cannot: which peer is this server.
func TestStartRejectsInconsistentCluster(t *testing.T) {
	t.Parallel()
	ports := freePorts(t, "127.0.0.1", 3)
	addr := func(i int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])) }
	tests := []struct {
		name  string
		peers []string
		size  int
		want  string
	}{
		{"only self", []string{addr(0)}, 0, "Peers name no other server"},
		{"self as localhost", []string{"localhost:" + strconv.Itoa(ports[0])}, 0, "Peers name no other server"},
		{"size disagrees", []string{addr(0), addr(1), addr(2)}, 5, "ClusterSize is 5 but Peers name 3 servers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := Start(ctx, Config{
				Name: "a", DataDir: t.TempDir(), Listen: "127.0.0.1:-1",
				ClusterListen: addr(0), Peers: tt.peers, ClusterSize: tt.size, Logger: testLogger(),
			})
			if err == nil {
				s.Shutdown()
				t.Fatal("Start succeeded")
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start = %q, want ErrInvalidConfig containing %q", err, tt.want)
			}
		})
	}
}
