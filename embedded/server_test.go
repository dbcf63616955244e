package embedded

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestSingleNode(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{Name: "solo", DataDir: t.TempDir(), Listen: "127.0.0.1:-1"})

	if !regexp.MustCompile(`^nats://127\.0\.0\.1:\d+$`).MatchString(s.ClientURL()) {
		t.Errorf("ClientURL() = %q, want nats://127.0.0.1:PORT", s.ClientURL())
	}
	if s.ClusterURL() != "" || s.ClusterAddr() != "" {
		t.Errorf("ClusterURL() = %q, ClusterAddr() = %q, want empty for a single node", s.ClusterURL(), s.ClusterAddr())
	}
	if s.ClusterSize() != 1 {
		t.Errorf("ClusterSize() = %d, want 1", s.ClusterSize())
	}
	waitJetStream(t, 10*time.Second, s)
	if !s.Ready() {
		t.Error("Ready() = false after WaitJetStream succeeded")
	}

	js := connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "solo"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "v" {
		t.Fatalf("Get = %v, %v; want v", e, err)
	}

	s.Shutdown()
	s.Shutdown() // idempotent
	if s.Ready() {
		t.Error("Ready() = true after Shutdown")
	}
	if err := s.WaitJetStream(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("WaitJetStream after Shutdown = %v, want ErrClosed", err)
	}
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.ClientURL(), "nats://"), time.Second); err == nil {
		c.Close()
		t.Error("client port still accepts after Shutdown")
	}
}

func TestSingleNodeRestartKeepsData(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	s := startServer(t, Config{Name: "a", DataDir: dir, Listen: "127.0.0.1:-1"})
	waitJetStream(t, 10*time.Second, s)
	kv, err := connect(t, s).CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "keep"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	s.Shutdown()

	s = startServer(t, Config{Name: "a", DataDir: dir, Listen: "127.0.0.1:-1"})
	waitJetStream(t, 10*time.Second, s)
	kv, err = connect(t, s).KeyValue(ctx, "keep")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "v" {
		t.Fatalf("Get after restart = %v, %v; want v", e, err)
	}
}

func TestWaitJetStreamTimeoutSaysWhy(t *testing.T) {
	t.Parallel()
	// One server of a configured two: JetStream cannot bootstrap.
	ports := freePorts(t, "127.0.0.1", 2)
	h := &recordHandler{}
	s := startServer(t, Config{
		Name: "lonely", DataDir: t.TempDir(), Listen: "127.0.0.1:-1",
		ClusterListen: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		Peers:         []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))},
		Logger:        slog.New(h),
	})
	if s.ClusterSize() != 2 {
		t.Errorf("ClusterSize() = %d, want 2", s.ClusterSize())
	}
	if !h.find(slog.LevelWarn, "embedded: a 2-node cluster loses its quorum when either node dies; run 3") {
		t.Error("no warning about a 2-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := s.WaitJetStream(ctx)
	if !errors.Is(err, ErrNotReady) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitJetStream = %v, want ErrNotReady and DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "meta leader") {
		t.Errorf("error %q does not say that the meta leader is missing", err)
	}
	if s.Ready() {
		t.Error("Ready() = true without a meta leader")
	}
}

func TestStartFailsWhenPortTaken(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = Start(ctx, Config{Name: "x", DataDir: t.TempDir(), Listen: l.Addr().String(), Logger: testLogger()})
	if err == nil || !strings.Contains(err.Error(), "failed to start") {
		t.Fatalf("Start on a taken port = %v, want a 'failed to start' error", err)
	}
}

func TestTokenAuth(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{Name: "tok", DataDir: t.TempDir(), Listen: "127.0.0.1:-1", Token: "s3cret"})
	// The in-process readiness client must present the token.
	waitJetStream(t, 10*time.Second, s)
	if nc, err := nats.Connect(s.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("connected without the token")
	}
	nc, err := nats.Connect(s.ClientURL(), nats.Token("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}
