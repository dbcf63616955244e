package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestApplyEnv(t *testing.T) {
	env := map[string]string{
		"COORD_NAME":           "node-b",
		"COORD_DATA":           "/var/lib/coord",
		"COORD_LISTEN":         "0.0.0.0:4333",
		"COORD_HTTP":           "127.0.0.1:8081",
		"COORD_WEIGHT":         "3",
		"COORD_CLUSTER_LISTEN": "0.0.0.0:6222",
		"COORD_PEERS":          " a:6222, b:6222,,",
		"COORD_DISCOVER":       "dns:coord.svc:6222",
		"COORD_CLUSTER_SIZE":   "3",
		"COORD_NATS_URL":       "nats://n:4222",
		"COORD_NATS_CREDS":     "/c.creds",
		"COORD_NATS_NKEY":      "/seed.nk",
		"COORD_NATS_USER":      "u",
		"COORD_NATS_PASSWORD":  "p",
		"COORD_NATS_TOKEN":     "t",
		"COORD_NAMESPACE":      "ns",
		"COORD_TTL":            "7s",
		"COORD_LOG_LEVEL":      "debug",
		"COORD_LOG_FORMAT":     "json",
		// Security keys.
		"COORD_HTTP_TOKEN":       "ht",
		"COORD_SERVER_TLS_CERT":  "/tls/tls.crt",
		"COORD_SERVER_TLS_KEY":   "/tls/tls.key",
		"COORD_SERVER_TLS_CA":    "/tls/ca.crt",
		"COORD_SERVER_AUTH_FILE": "/auth.conf",
		"COORD_NATS_TLS_CA":      "/ca.pem",
		"COORD_NATS_TLS_CERT":    "/c.pem",
		"COORD_NATS_TLS_KEY":     "/k.pem",
		"COORD_NATS_DOMAIN":      "hub",
		"COORD_NATS_API_PREFIX":  "JS.acc.API",
		"COORD_INSECURE":         "true",
	}
	f := Default()
	if err := f.ApplyEnv(envOf(env)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"Node.Name", f.Node.Name, "node-b"},
		{"Node.Data", f.Node.Data, "/var/lib/coord"},
		{"Node.Listen", f.Node.Listen, "0.0.0.0:4333"},
		{"Node.HTTP", f.Node.HTTP, "127.0.0.1:8081"},
		{"Node.Weight", f.Node.Weight, 3},
		{"Cluster.Listen", f.Cluster.Listen, "0.0.0.0:6222"},
		{"Cluster.Peers", strings.Join(f.Cluster.Peers, "|"), "a:6222|b:6222"},
		{"Cluster.Discover", f.Cluster.Discover, "dns:coord.svc:6222"},
		{"Cluster.Size", f.Cluster.Size, 3},
		{"NATS.URL", f.NATS.URL, "nats://n:4222"},
		{"NATS.Creds", f.NATS.Creds, "/c.creds"},
		{"NATS.NKey", f.NATS.NKey, "/seed.nk"},
		{"NATS.User", f.NATS.User, "u"},
		{"NATS.Password", f.NATS.Password, "p"},
		{"NATS.Token", f.NATS.Token, "t"},
		{"Node.HTTPToken", f.Node.HTTPToken, "ht"},
		{"Server.TLS.Cert", f.Server.TLS.Cert, "/tls/tls.crt"},
		{"Server.TLS.Key", f.Server.TLS.Key, "/tls/tls.key"},
		{"Server.TLS.CA", f.Server.TLS.CA, "/tls/ca.crt"},
		{"Server.AuthFile", f.Server.AuthFile, "/auth.conf"},
		{"NATS.TLS.CA", f.NATS.TLS.CA, "/ca.pem"},
		{"NATS.TLS.Cert", f.NATS.TLS.Cert, "/c.pem"},
		{"NATS.TLS.Key", f.NATS.TLS.Key, "/k.pem"},
		{"NATS.Domain", f.NATS.Domain, "hub"},
		{"NATS.APIPrefix", f.NATS.APIPrefix, "JS.acc.API"},
		{"Insecure", f.Insecure, true},
		{"Namespace", f.Namespace, "ns"},
		{"Timing.TTL", time.Duration(f.Timing.TTL), 7 * time.Second},
		{"Log.Level", f.Log.Level, "debug"},
		{"Log.Format", f.Log.Format, "json"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// Every documented variable is read, and no other.
	names := EnvNames()
	slices.Sort(names)
	var documented []string
	for k := range env {
		documented = append(documented, k)
	}
	slices.Sort(documented)
	if !slices.Equal(names, documented) {
		t.Errorf("EnvNames() = %v, want %v", names, documented)
	}
}

func TestApplyEnvProblems(t *testing.T) {
	f := Default()
	err := f.ApplyEnv(envOf(map[string]string{"COORD_TTL": "soon", "COORD_WEIGHT": "heavy", "COORD_CLUSTER_SIZE": "3", "COORD_NAME": "ok"}))
	ps := asProblems(t, err)
	if len(ps) != 2 {
		t.Fatalf("got:%s", dump(ps))
	}
	if !strings.HasPrefix(ps[0].Msg, `environment COORD_WEIGHT: expected a whole number, got "heavy"`) ||
		!strings.HasPrefix(ps[1].Msg, `environment COORD_TTL: invalid duration "soon"`) {
		t.Errorf("got:%s", dump(ps))
	}
	// The good ones are applied anyway.
	if f.Cluster.Size != 3 || f.Node.Name != "ok" || f.Timing.TTL != Default().Timing.TTL {
		t.Errorf("after bad env: %+v", f)
	}
}

// defaults < environment < file; empty values in the file do not count.
func TestPrecedence(t *testing.T) {
	env := map[string]string{
		"COORD_NAME":      "from-env",
		"COORD_TTL":       "5s",
		"COORD_PEERS":     "a:6222,b:6222",
		"COORD_NAMESPACE": "envns",
		"COORD_LOG_LEVEL": "debug",
	}
	f := mustParse(t, `
node:
  name: ""          # empty: keeps COORD_NAME
cluster:
  listen: :6222
  peers: []         # empty: keeps COORD_PEERS
namespace: filens   # set: wins over COORD_NAMESPACE
timing:
  ttl: 20s          # set: wins over COORD_TTL
  renew_interval: 0 # zero: derived
`, env)
	if f.Node.Name != "from-env" {
		t.Errorf("Node.Name = %q, want from-env", f.Node.Name)
	}
	if strings.Join(f.Cluster.Peers, ",") != "a:6222,b:6222" {
		t.Errorf("Cluster.Peers = %v, want the environment's", f.Cluster.Peers)
	}
	if f.Namespace != "filens" {
		t.Errorf("Namespace = %q, want filens", f.Namespace)
	}
	if r := f.Timing.Resolve(); r.TTL != Duration(20*time.Second) || r.RenewInterval != Duration(4*time.Second) {
		t.Errorf("Timing = %+v, want ttl 20s, renew_interval 4s", r)
	}
	if f.Log.Level != "debug" {
		t.Errorf("Log.Level = %q, want debug (env, not in file)", f.Log.Level)
	}
	if f.Node.Listen != DefaultListen {
		t.Errorf("Node.Listen = %q, want the default", f.Node.Listen)
	}

	// Flags are applied by the caller, after Load, followed by Validate.
	f.Timing.TTL = Duration(500 * time.Millisecond)
	if err := f.Validate(); err == nil {
		t.Error("Validate after a bad flag value: want a problem")
	}
}

func TestParseUsesProcessEnvironment(t *testing.T) {
	for _, name := range EnvNames() {
		t.Setenv(name, "")
	}
	t.Setenv("COORD_NAMESPACE", "fromprocess")
	f, err := Parse("t.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Namespace != "fromprocess" {
		t.Errorf("Namespace = %q, want fromprocess", f.Namespace)
	}
}
