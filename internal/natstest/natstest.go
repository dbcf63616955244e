// Package natstest runs real nats-server instances in-process for tests: random loopback
// ports, a fresh JetStream store per test, shut down in t.Cleanup.
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Server is a running test server.
type Server struct {
	*server.Server
	t testing.TB
}

// Run starts a single JetStream server on a random loopback port.
func Run(t testing.TB) *Server {
	t.Helper()
	return RunWithDir(t, t.TempDir(), -1)
}

// RunWithDir starts a single JetStream server with its store in dir on port (-1: random).
// Restarting on the same dir and port brings the same data back.
func RunWithDir(t testing.TB, dir string, port int) *Server {
	t.Helper()
	opts := &server.Options{
		ServerName: "test",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoLog:      true,
		NoSigs:     true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: new server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatalf("natstest: server not ready")
	}
	ts := &Server{Server: s, t: t}
	t.Cleanup(ts.Stop)
	return ts
}

// Stop shuts the server down and waits. Safe to call more than once.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}

// Port returns the client port the server listens on.
func (s *Server) Port() int { return s.Addr().(*net.TCPAddr).Port }

// Connect opens a client connection that is closed in t.Cleanup.
func (s *Server) Connect(opts ...nats.Option) *nats.Conn {
	s.t.Helper()
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		s.t.Fatalf("natstest: connect: %v", err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}
