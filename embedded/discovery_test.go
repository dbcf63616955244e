package embedded

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// fakeDNS plays a headless service that publishes not-ready addresses: a
// server's address appears when it is registered, before it is up.
type fakeDNS struct {
	mu    sync.Mutex
	addrs []string
}

func (d *fakeDNS) add(ip string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addrs = append(d.addrs, ip)
}

func (d *fakeDNS) LookupHost(_ context.Context, host string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if host != "coord.test" || len(d.addrs) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return append([]string(nil), d.addrs...), nil
}

// sharedRoutePort finds a port free on every given loopback address, since
// servers found through one DNS name share the route port.
func sharedRoutePort(t *testing.T, ips []string) int {
	t.Helper()
	for range 20 {
		port := freePorts(t, ips[0], 1)[0]
		ok := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no port free on all of", ips)
	return 0
}

func TestDiscoverDNS(t *testing.T) {
	t.Parallel()
	// Distinct loopback addresses stand in for pod IPs (Linux routes all
	// of 127.0.0.0/8 to lo).
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	if l, err := net.Listen("tcp", "127.0.0.2:0"); err != nil {
		t.Skip("cannot listen on 127.0.0.2:", err)
	} else {
		l.Close()
	}
	port := sharedRoutePort(t, ips)
	dns := &fakeDNS{}
	start := func(i int) *Server {
		dns.add(ips[i])
		return startServer(t, Config{
			Name:             fmt.Sprintf("d%d", i),
			DataDir:          t.TempDir(),
			Listen:           "127.0.0.1:-1",
			ClusterListen:    net.JoinHostPort(ips[i], strconv.Itoa(port)),
			Discover:         "dns:coord.test",
			DiscoverInterval: 50 * time.Millisecond,
			ClusterSize:      3,
			Resolver:         dns,
		})
	}

	// A new cluster must wait for all ClusterSize servers even though each
	// server finds fewer in DNS at first: were it sized by what it found, two
	// would elect a leader on their own.
	first, second := start(0), start(1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	err := second.WaitJetStream(ctx)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "needs all of them up (discovery of coord.test has found 2)") {
		t.Fatalf("WaitJetStream with 2 of 3 servers = %v, want an error saying 2 were found", err)
	}

	servers := []*Server{first, second, start(2)}
	waitJetStream(t, 30*time.Second, servers...)
	for _, s := range servers {
		waitMetaSize(t, s, 3)
	}

	js := connect(t, first)
	var kv jetstream.KeyValue
	eventually(t, 20*time.Second, func(ctx context.Context) (err error) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "found", Replicas: 3})
		return err
	})
	eventually(t, 10*time.Second, func(ctx context.Context) error {
		_, err := kv.Put(ctx, "k", []byte("v"))
		return err
	})
}

// A stale address in DNS must not make a new cluster wait for a server that
// does not exist.
func TestDiscoverSurplusAddress(t *testing.T) {
	t.Parallel()
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	if l, err := net.Listen("tcp", "127.0.0.2:0"); err != nil {
		t.Skip("cannot listen on 127.0.0.2:", err)
	} else {
		l.Close()
	}
	port := sharedRoutePort(t, ips)
	dns := &fakeDNS{}
	dns.add("127.0.0.10") // sorts first; nothing listens there
	for _, ip := range ips {
		dns.add(ip)
	}
	var servers []*Server
	for i, ip := range ips {
		servers = append(servers, startServer(t, Config{
			Name:             fmt.Sprintf("s%d", i),
			DataDir:          t.TempDir(),
			Listen:           "127.0.0.1:-1",
			ClusterListen:    net.JoinHostPort(ip, strconv.Itoa(port)),
			Discover:         "dns:coord.test",
			DiscoverInterval: 50 * time.Millisecond,
			ClusterSize:      3,
			Resolver:         dns,
		}))
	}
	waitJetStream(t, 30*time.Second, servers...)
	for _, s := range servers {
		waitMetaSize(t, s, 3)
	}
}
