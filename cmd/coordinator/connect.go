package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/jetcoord/coordinator/embedded"
	"github.com/jetcoord/coordinator/internal/config"
	"github.com/jetcoord/coordinator/kv"
)

// natsFlags are the connection flags shared by the daemon (external mode) and the operator
// commands.
type natsFlags struct {
	url, creds, nkey, user, password, token, ca, cert, key string
	domain, apiPrefix                                      string
	namespace                                              string
}

func (f *natsFlags) register(fs *flag.FlagSet, defaultURL string) {
	fs.StringVar(&f.url, "nats", defaultURL, "NATS server URL(s), comma separated")
	fs.StringVar(&f.creds, "creds", "", "NATS credentials file (JWT and nkey seed)")
	fs.StringVar(&f.nkey, "nkey", "", "file with an nkey seed")
	fs.StringVar(&f.user, "user", "", "NATS user")
	fs.StringVar(&f.password, "password", "", "NATS password")
	fs.StringVar(&f.token, "token", "", "NATS token")
	fs.StringVar(&f.ca, "tls-ca", "", "CA certificate (PEM) that signed the server's certificate")
	fs.StringVar(&f.cert, "tls-cert", "", "client certificate (PEM)")
	fs.StringVar(&f.key, "tls-key", "", "client key (PEM)")
	fs.StringVar(&f.domain, "js-domain", "", "JetStream domain of the coordination buckets (external NATS: leaf node or hub)")
	fs.StringVar(&f.apiPrefix, "js-api-prefix", "", "JetStream API prefix imported from another account, e.g. JS.acc.API")
	fs.StringVar(&f.namespace, "namespace", "", "namespace of buckets, subjects and stream (default coord)")
}

// toConfig is the operator commands' connection: the flags, and for each one not given the
// COORD_NATS_* variable the daemon reads too (COORD_NATS_USER, COORD_NATS_PASSWORD,
// COORD_NATS_TOKEN, COORD_NATS_CREDS, COORD_NATS_NKEY, COORD_NATS_TLS_CA, …), so that a
// secured node and its operators share one environment. Secrets stay out of -h output.
func (f *natsFlags) toConfig() config.NATS {
	or := func(v, env string) string {
		if v != "" {
			return v
		}
		return getenv(env)
	}
	return config.NATS{URL: f.url,
		Creds: or(f.creds, "COORD_NATS_CREDS"), NKey: or(f.nkey, "COORD_NATS_NKEY"),
		User: or(f.user, "COORD_NATS_USER"), Password: or(f.password, "COORD_NATS_PASSWORD"),
		Token:  or(f.token, "COORD_NATS_TOKEN"),
		TLS:    config.TLS{CA: or(f.ca, "COORD_NATS_TLS_CA"), Cert: or(f.cert, "COORD_NATS_TLS_CERT"), Key: or(f.key, "COORD_NATS_TLS_KEY")},
		Domain: or(f.domain, "COORD_NATS_DOMAIN"), APIPrefix: or(f.apiPrefix, "COORD_NATS_API_PREFIX")}
}

// natsOptions turns the connection settings into nats.go options.
func natsOptions(c config.NATS, name string) ([]nats.Option, error) {
	opts, err := natsAuth(c)
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.Name(name))
	if c.TLS.CA != "" {
		opts = append(opts, nats.RootCAs(c.TLS.CA))
	}
	if c.TLS.Cert != "" || c.TLS.Key != "" {
		opts = append(opts, nats.ClientCert(c.TLS.Cert, c.TLS.Key))
	}
	return opts, nil
}

// natsAuth is how the client proves who it is: creds, nkey, user/password or token.
func natsAuth(c config.NATS) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case c.Creds != "":
		opts = append(opts, nats.UserCredentials(c.Creds))
	case c.NKey != "":
		o, err := nats.NkeyOptionFromSeed(c.NKey)
		if err != nil {
			return nil, fmt.Errorf("nkey seed file %q: %w", c.NKey, err)
		}
		opts = append(opts, o)
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token))
	}
	return opts, nil
}

// connectOnce connects for an operator command: one try with a short timeout and a message
// that says what to do when nothing answers.
func connectOnce(c config.NATS) (*nats.Conn, error) {
	opts, err := natsOptions(c, "coordinator-cli")
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.Timeout(3*time.Second))
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		if errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization") {
			return nil, fmt.Errorf("cannot connect to NATS at %s: %w — give credentials with --user/--password, --token, --nkey or --creds (or COORD_NATS_USER/COORD_NATS_PASSWORD, COORD_NATS_TOKEN, COORD_NATS_NKEY, COORD_NATS_CREDS)", c.URL, err)
		}
		if msg := err.Error(); strings.Contains(msg, "x509") || strings.Contains(msg, "secure connection") {
			return nil, fmt.Errorf("cannot connect to NATS at %s: %w — the server uses TLS: give its CA with --tls-ca FILE (or COORD_NATS_TLS_CA)", c.URL, err)
		}
		if errors.Is(err, nats.ErrNoServers) {
			return nil, fmt.Errorf("cannot connect to NATS at %s: no server answered — is a coordinator node running there? (start one with 'coordinator run', or point --nats at a node)", c.URL)
		}
		return nil, fmt.Errorf("cannot connect to NATS at %s: %w", c.URL, err)
	}
	return nc, nil
}

// openStore binds the namespace's store for an operator command.
func openStore(nc *nats.Conn, ns string, c config.NATS) (*kv.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := kv.Open(ctx, nc, kv.Options{Namespace: nsOrDefault(ns), BindOnly: true, Domain: c.Domain, APIPrefix: c.APIPrefix})
	if err != nil {
		return nil, fmt.Errorf("opening the %q namespace: %w (is JetStream enabled and ready?)", nsOrDefault(ns), err)
	}
	return st, nil
}

func nsOrDefault(ns string) string {
	if ns == "" {
		if env := os.Getenv("COORD_NAMESPACE"); env != "" {
			return env
		}
		return kv.DefaultNamespace
	}
	return ns
}

// cliConnect is the common start of operator commands.
func cliConnect(f *natsFlags) (*nats.Conn, *kv.Store, error) {
	c := f.toConfig()
	nc, err := connectOnce(c)
	if err != nil {
		return nil, nil, err
	}
	st, err := openStore(nc, f.namespace, c)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, st, nil
}

// connectDaemon connects the daemon to an external NATS: it retries forever with backoff
// and reconnects forever, logging what it waits for.
func connectDaemon(ctx context.Context, c config.NATS, node string, log *slog.Logger) (*nats.Conn, error) {
	opts, err := natsOptions(c, "coordinator "+node)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(500*time.Millisecond, 0),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("disconnected from NATS; reconnecting (workers stop at their renew deadline if this lasts)", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted()) }),
		nats.ConnectHandler(func(nc *nats.Conn) { log.Info("connected to NATS", "url", nc.ConnectedUrlRedacted()) }),
	)
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", c.URL, err)
	}
	if !nc.IsConnected() {
		log.Warn("NATS is not reachable yet; retrying in the background", "url", c.URL)
	}
	return nc, nil
}

// embeddedAuth sets the embedded server's TLS and client authentication from the config
// and returns the options with which this node's own connection authenticates. Without
// server.auth_file, the nats section's credentials are the one user the server admits.
func embeddedAuth(ec *embedded.Config, cfg config.File) ([]nats.Option, error) {
	ec.TLSCert, ec.TLSKey, ec.TLSCA = cfg.Server.TLS.Cert, cfg.Server.TLS.Key, cfg.Server.TLS.CA
	ec.VerifyClients = cfg.Server.TLS.VerifyClients
	ec.Insecure = cfg.Insecure
	auth, err := natsAuth(cfg.NATS)
	if err != nil {
		return nil, err
	}
	ec.ClientAuth = auth
	n := cfg.NATS
	switch {
	case cfg.Server.AuthFile != "":
		ec.AuthFile = cfg.Server.AuthFile
	case n.NKey != "":
		seed, err := os.ReadFile(n.NKey)
		if err != nil {
			return nil, fmt.Errorf("nats.nkey: %w", err)
		}
		kp, err := nkeys.ParseDecoratedNKey(seed)
		if err != nil {
			return nil, fmt.Errorf("nats.nkey %s: not an nkey seed: %w", n.NKey, err)
		}
		pub, err := kp.PublicKey()
		kp.Wipe()
		if err != nil {
			return nil, fmt.Errorf("nats.nkey %s: %w", n.NKey, err)
		}
		ec.NKeys = []string{pub}
	case n.User != "":
		ec.User, ec.Password = n.User, n.Password
	case n.Token != "":
		ec.Token = n.Token
	}
	return auth, nil
}
