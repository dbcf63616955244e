package kv

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// runDomainServer starts a JetStream server whose JetStream domain is domain.
func runDomainServer(t *testing.T, domain string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		ServerName: "hub", Host: "127.0.0.1", Port: -1, JetStream: true, JetStreamDomain: domain,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// A store opened through a JetStream domain writes its claims through the domain's API
// prefix, as nats.go's own KeyValue does; a hand-built "$KV.<bucket>.<key>" subject would
// not reach a bucket that lives behind a domain.
func TestDomain(t *testing.T) {
	srv := runDomainServer(t, "hub")
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := ctxT(t)
	st, err := Open(ctx, nc, Options{Namespace: "dom", Domain: "hub"})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := st.Workers.Create(ctx, "w", []byte("a"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rev2, err := st.Workers.Update(ctx, "w", []byte("b"), rev, 5*time.Second)
	if err != nil {
		t.Fatalf("renewal (per-entry TTL) through domain: %v", err)
	}
	if _, err := st.Workers.Update(ctx, "w", []byte("c"), rev, 5*time.Second); err == nil {
		t.Fatal("stale renewal through domain succeeded")
	}
	e, err := st.Workers.Get(ctx, "w")
	if err != nil || string(e.Value) != "b" || e.Revision != rev2 {
		t.Fatalf("Get = %+v, %v; want b at %d", e, err, rev2)
	}
	if got := st.Workers.keyPrefix; got != "$JS.hub.API.$KV.dom_workers." {
		t.Errorf("keyPrefix = %q", got)
	}
}

// An account that uses another account's JetStream through an imported API prefix writes
// claims through that prefix: the exporting account maps JS.acc.API.$KV.> onto its own
// $KV.>, and nothing else of it is visible.
func TestAPIPrefix(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "accounts.conf")
	err := os.WriteFile(conf, []byte(`
accounts {
  JS: {
    jetstream: enabled
    users: [{user: js, password: js}]
    exports: [
      {service: "$JS.API.>"}
      {service: "$KV.>"}
      {stream: "_INBOX_app.>"}
    ]
  }
  APP: {
    users: [{user: app, password: app}]
    imports: [
      {service: {account: JS, subject: "$JS.API.>"}, to: "JS.acc.API.>"}
      {service: {account: JS, subject: "$KV.>"}, to: "JS.acc.API.$KV.>"}
    ]
  }
}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.JetStream, opts.StoreDir, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, t.TempDir(), true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	defer func() { s.Shutdown(); s.WaitForShutdown() }()

	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("app", "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := ctxT(t)
	st, err := Open(ctx, nc, Options{Namespace: "pfx", APIPrefix: "JS.acc.API"})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := st.Workers.Create(ctx, "w", []byte("a"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Workers.Update(ctx, "w", []byte("b"), rev, 5*time.Second); err != nil {
		t.Fatalf("renewal (per-entry TTL) through the API prefix: %v", err)
	}
	if e, err := st.Workers.Get(ctx, "w"); err != nil || string(e.Value) != "b" {
		t.Fatalf("Get = %+v, %v; want b", e, err)
	}
}
