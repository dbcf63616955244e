package embedded

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// What TLS costs a coordinator: the handshake of each new connection, and claims
// (KV Create, one at a time, as a node claims) over an established connection.
//
//	go test -run '^$' -bench 'Connect|Claims' -benchtime 2s ./embedded
func benchServer(b *testing.B, withTLS bool) (*Server, []nats.Option) {
	b.Helper()
	cfg := Config{Name: "bench", DataDir: b.TempDir(), Listen: "127.0.0.1:-1", User: "u", Password: "p", Logger: testLogger()}
	opts := []nats.Option{nats.UserInfo("u", "p")}
	if withTLS {
		caFile, certFile, keyFile := writeTestPKI(b)
		cfg.TLSCert, cfg.TLSKey, cfg.TLSCA = certFile, keyFile, caFile
		pool := x509.NewCertPool()
		ca, err := os.ReadFile(caFile)
		if err != nil {
			b.Fatal(err)
		}
		pool.AppendCertsFromPEM(ca)
		opts = append(opts, nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	s, err := Start(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitJetStream(ctx); err != nil {
		b.Fatal(err)
	}
	return s, opts
}

func benchConnect(b *testing.B, withTLS bool) {
	s, opts := benchServer(b, withTLS)
	b.ResetTimer()
	for b.Loop() {
		nc, err := nats.Connect(s.ClientURL(), opts...)
		if err != nil {
			b.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			b.Fatal(err)
		}
		nc.Close()
	}
}

func BenchmarkConnectPlain(b *testing.B) { benchConnect(b, false) }
func BenchmarkConnectTLS(b *testing.B)   { benchConnect(b, true) }

func benchClaims(b *testing.B, withTLS bool) {
	s, opts := benchServer(b, withTLS)
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		if _, err := kv.Create(ctx, fmt.Sprintf("w%d", i), []byte(`{"worker":"w","node":"n"}`)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
}

func BenchmarkClaimsPlain(b *testing.B) { benchClaims(b, false) }
func BenchmarkClaimsTLS(b *testing.B)   { benchClaims(b, true) }
