package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetcoord/coordinator/internal/config"
	"github.com/jetcoord/coordinator/kv"
)

// natsFlags are the connection flags shared by the daemon (external mode) and the operator
// commands.
type natsFlags struct {
	url, creds, nkey, user, password, token, ca, cert, key string
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
	fs.StringVar(&f.namespace, "namespace", "", "namespace of buckets, subjects and stream (default coord)")
}

func (f *natsFlags) toConfig() config.NATS {
	return config.NATS{URL: f.url, Creds: f.creds, NKey: f.nkey, User: f.user, Password: f.password,
		Token: f.token, TLS: config.TLS{CA: f.ca, Cert: f.cert, Key: f.key}}
}

// natsOptions turns the connection settings into nats.go options.
func natsOptions(c config.NATS, name string) ([]nats.Option, error) {
	opts := []nats.Option{nats.Name(name)}
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
	if c.TLS.CA != "" {
		opts = append(opts, nats.RootCAs(c.TLS.CA))
	}
	if c.TLS.Cert != "" || c.TLS.Key != "" {
		opts = append(opts, nats.ClientCert(c.TLS.Cert, c.TLS.Key))
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
		if errors.Is(err, nats.ErrNoServers) {
			return nil, fmt.Errorf("cannot connect to NATS at %s: no server answered — is a coordinator node running there? (start one with 'coordinator run', or point --nats at a node)", c.URL)
		}
		return nil, fmt.Errorf("cannot connect to NATS at %s: %w", c.URL, err)
	}
	return nc, nil
}

// openStore binds the namespace's store for an operator command.
func openStore(nc *nats.Conn, ns string) (*kv.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := kv.Open(ctx, nc, kv.Options{Namespace: nsOrDefault(ns), BindOnly: true})
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
	nc, err := connectOnce(f.toConfig())
	if err != nil {
		return nil, nil, err
	}
	st, err := openStore(nc, f.namespace)
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
