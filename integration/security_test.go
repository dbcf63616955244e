package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// securePKI makes a CA and a node certificate for loopback with `coordinator certs`.
func securePKI(t *testing.T) (dir string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "tls")
	if out, err := exec.Command(bins.Coordinator, "certs", "--dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("coordinator certs: %v\n%s", err, out)
	}
	return dir
}

// TestOpenListenerRefuses: a client, route or HTTP listener that other machines can reach
// without authentication refuses to start, with an error that names the fix; --insecure
// allows it on purpose. `check` says the same as `run`.
func TestOpenListenerRefuses(t *testing.T) {
	t.Parallel()
	pki := securePKI(t)
	for _, c := range []struct {
		name  string
		args  []string
		env   []string
		words []string
	}{
		{"client", []string{"--listen", "0.0.0.0:0"}, nil,
			[]string{`node.listen "0.0.0.0:0"`, "nats.user", "--insecure"}},
		{"route without TLS", []string{"--listen", "127.0.0.1:0", "--cluster-listen", "0.0.0.0:0", "--peers", "10.0.0.2:6222,10.0.0.3:6222"},
			[]string{"COORD_NATS_USER=u", "COORD_NATS_PASSWORD=p"},
			[]string{`cluster.listen "0.0.0.0:0"`, "server.tls.cert", "--insecure"}},
		{"route TLS without CA", []string{"--listen", "127.0.0.1:0", "--cluster-listen", "0.0.0.0:0", "--peers", "10.0.0.2:6222,10.0.0.3:6222",
			"--server-tls-cert", filepath.Join(pki, "tls.crt"), "--server-tls-key", filepath.Join(pki, "tls.key")}, nil,
			[]string{"server.tls.ca is empty", "any certificate"}},
		{"http", []string{"--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"}, nil,
			[]string{`node.http "0.0.0.0:0"`, "http_token", "--insecure"}},
		{"missing cert file", []string{"--server-tls-cert", "/nonexistent/tls.crt", "--server-tls-key", filepath.Join(pki, "tls.key")}, nil,
			[]string{`server.tls.cert "/nonexistent/tls.crt" cannot be read`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bins.Coordinator, append([]string{"run", "--data", t.TempDir()}, c.args...)...)
			cmd.Env = append(cleanEnv(), c.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 2 {
					t.Fatalf("run exited with %v, want status 2; stderr:\n%s", err, stderr.String())
				}
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("run started instead of refusing; stderr:\n%s", stderr.String())
			}
			for _, w := range c.words {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("error does not say %q:\n%s", w, stderr.String())
				}
			}
		})
	}
	t.Run("insecure allows it", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(cfg, []byte("node:\n  listen: 0.0.0.0:4222\n  http: 0.0.0.0:8080\ninsecure: true\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bins.Coordinator, "check", "--config", cfg).CombinedOutput(); err != nil {
			t.Fatalf("check with insecure: true: %v\n%s", err, out)
		}
		if err := os.WriteFile(cfg, []byte("node:\n  listen: 0.0.0.0:4222\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bins.Coordinator, "check", "--config", cfg).CombinedOutput(); err == nil {
			t.Fatalf("check accepted an open listener:\n%s", out)
		}
	})
}

// cleanEnv is the test's environment without COORD_* variables.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COORD_") {
			out = append(out, kv)
		}
	}
	return out
}

// routeLog counts what a rogue server logs about its routes.
type routeLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *routeLog) add(format string, v ...any) {
	s := fmt.Sprintf(format, v...)
	if strings.Contains(strings.ToLower(s), "route") {
		l.mu.Lock()
		l.lines = append(l.lines, s)
		l.mu.Unlock()
	}
}
func (l *routeLog) Noticef(f string, v ...any) { l.add(f, v...) }
func (l *routeLog) Warnf(f string, v ...any)   { l.add(f, v...) }
func (l *routeLog) Fatalf(f string, v ...any)  { l.add(f, v...) }
func (l *routeLog) Errorf(f string, v ...any)  { l.add(f, v...) }
func (l *routeLog) Debugf(f string, v ...any)  { l.add(f, v...) }
func (l *routeLog) Tracef(string, ...any)      {}
func (l *routeLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// TestSecureClusterRefusesStrangers: three nodes with TLS (mutual on routes) and a user and
// password. An anonymous client, a client with a wrong password and a client without TLS
// are refused; a plain nats-server that dials a route port (as a server without the
// cluster's certificate would) never joins, and its clients see no bucket, no event, no
// control subject: they learn and change nothing. The operator commands work with the
// COORD_NATS_* variables.
func TestSecureClusterRefusesStrangers(t *testing.T) {
	t.Parallel()
	pki := securePKI(t)
	env := []string{"COORD_NATS_USER=coord", "COORD_NATS_PASSWORD=s3cret", "COORD_NATS_TLS_CA=" + filepath.Join(pki, "ca.crt")}
	c := startCluster(t, cluster.Options{TTL: 3 * time.Second, Workers: recorded("w"), Env: env, ExtraFlags: []string{
		"--server-tls-cert", filepath.Join(pki, "tls.crt"), "--server-tls-key", filepath.Join(pki, "tls.key"),
		"--server-tls-ca", filepath.Join(pki, "ca.crt")}})
	settle(t, c, "w")
	before, err := c.Owner("w")
	if err != nil {
		t.Fatal(err)
	}

	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(ca)
	tlsConf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	for _, s := range []struct {
		name string
		opts []nats.Option
	}{
		{"anonymous", []nats.Option{nats.Secure(tlsConf)}},
		{"wrong password", []nats.Option{nats.Secure(tlsConf), nats.UserInfo("coord", "guess")}},
		{"no TLS", []nats.Option{nats.UserInfo("coord", "s3cret")}},
	} {
		nc, err := nats.Connect(c.ClientURL(0), append(s.opts, nats.Timeout(3*time.Second))...)
		if err == nil {
			nc.Close()
			t.Errorf("%s client connected", s.name)
		}
	}
	// The operator commands authenticate through the environment.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if st, err := c.Node(0).StatusCLI(ctx); err != nil || len(st.Workers) != 1 {
		t.Fatalf("coordinator status with COORD_NATS_*: %+v, %v", st, err)
	}

	// A rogue server dials the first node's route port, without a certificate.
	rlog := &routeLog{}
	rogue, err := server.NewServer(&server.Options{ServerName: "rogue", Host: "127.0.0.1", Port: -1, NoSigs: true,
		Cluster: server.ClusterOpts{Name: "coord", Host: "127.0.0.1", Port: -1},
		Routes:  server.RoutesFromStr("nats-route://" + c.Node(0).RouteAddr())})
	if err != nil {
		t.Fatal(err)
	}
	rogue.SetLoggerV2(rlog, true, false, false)
	go rogue.Start()
	defer func() { rogue.Shutdown(); rogue.WaitForShutdown() }()
	if !rogue.ReadyForConnections(10 * time.Second) {
		t.Fatal("rogue server not ready")
	}
	if err := cluster.WaitFor(30*time.Second, "the rogue server to try its route three times", func() bool { return rlog.count() >= 3 }); err != nil {
		t.Fatal(err)
	}
	if n := rogue.NumRoutes(); n != 0 {
		t.Fatalf("rogue server has %d routes into the cluster", n)
	}
	rc, err := nats.Connect(rogue.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	events, err := rc.SubscribeSync("coord.events.>")
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	jctx, jcancel := context.WithTimeout(ctx, 2*time.Second)
	if _, err := js.KeyValue(jctx, "coord_workers"); err == nil {
		t.Error("the rogue server's client can read the workers bucket")
	}
	jcancel()
	if _, err := rc.Request("coord.ctl."+before.Node+".drain", []byte(`{}`), 2*time.Second); err == nil {
		t.Error("the rogue server's client reached a node's control subject")
	}
	_ = rc.Publish("$KV.coord_workers.w", []byte(`{"worker":"w","node":"rogue"}`))
	_ = rc.Flush()
	// An event happens in the cluster (a handoff); the rogue sees none of it.
	if _, err := c.Node(0).CLI(ctx, "release", "w"); err != nil {
		t.Fatal(err)
	}
	after, err := c.WaitOwner("w", 30*time.Second, func(o cluster.WorkerStatus) bool { return o.Token > before.Token })
	if err != nil {
		t.Fatal(err)
	}
	if after.Node == "rogue" {
		t.Errorf("claim written by the rogue: %+v", after)
	}
	if m, err := events.NextMsg(time.Second); err == nil {
		t.Errorf("the rogue server's client received %s: %s", m.Subject, m.Data)
	}
	if n := rogue.NumRoutes(); n != 0 {
		t.Fatalf("rogue server has %d routes into the cluster", n)
	}
	checkRuns(t, c)
}
