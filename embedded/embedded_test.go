package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger discards the servers' log unless EMBEDDED_TEST_LOG is "debug"
// or "info"; a cluster's log drowns test output otherwise.
func testLogger() *slog.Logger {
	var level slog.Level
	switch os.Getenv("EMBEDDED_TEST_LOG") {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	default:
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start(%s): %v", cfg.Name, err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// freePorts finds n distinct free ports on host. They are taken from below
// the kernel's ephemeral range (32768 and up on Linux), where neither port-0
// listeners nor outgoing connections of parallel tests can take them
// between this check and the servers' bind.
func freePorts(t *testing.T, host string, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			t.Fatalf("no %d free ports on %s", n, host)
		}
		port := 20000 + mathrand.IntN(12000)
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		ports = append(ports, port)
	}
	return ports
}

// startCluster starts n servers on loopback. Server 0 lists every server in
// Peers (itself included), the others list only the rest: both must give
// the same cluster size.
func startCluster(t *testing.T, n int) []*Server {
	t.Helper()
	ports := freePorts(t, "127.0.0.1", n)
	addrs := make([]string, n)
	for i, p := range ports {
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	servers := make([]*Server, n)
	for i := range servers {
		peers := addrs
		if i > 0 {
			peers = append(append([]string{}, addrs[:i]...), addrs[i+1:]...)
		}
		servers[i] = startServer(t, Config{
			Name:          fmt.Sprintf("n%d", i),
			DataDir:       t.TempDir(),
			Listen:        "127.0.0.1:-1",
			ClusterListen: addrs[i],
			Peers:         peers,
		})
	}
	return servers
}

func waitJetStream(t *testing.T, timeout time.Duration, servers ...*Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for i, s := range servers {
		wg.Go(func() { errs[i] = s.WaitJetStream(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func connect(t *testing.T, s *Server) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// eventually retries f with a short timeout per attempt until it succeeds
// or the deadline passes: JetStream calls made while there is no leader
// hang until their context ends.
func eventually(t *testing.T, deadline time.Duration, f func(ctx context.Context) error) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("still failing after %v: %v", deadline, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitMetaSize waits until s's JetStream meta group has size members. The
// size can be lower for a moment after the first election: the leader
// recounts the group as it adds each peer.
func waitMetaSize(t *testing.T, s *Server, size int) {
	t.Helper()
	got := 0
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		jsz, err := s.NATS().Jsz(nil)
		if err != nil {
			t.Fatal(err)
		}
		if jsz.Meta != nil {
			got = jsz.Meta.Size
		}
		if got == size {
			return
		}
	}
	t.Errorf("%s: JetStream meta group size = %d, want %d", s.cfg.Name, got, size)
}

// recordHandler keeps log records for assertions.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) find(level slog.Level, msg string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r.Level == level && r.Message == msg {
			return true
		}
	}
	return false
}
