package config

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"strings"
)

// security checks the keys that decide who can reach this node: files that must exist,
// settings the chosen mode would ignore, and listeners that other machines can reach
// without authentication (refused unless insecure is set).
func (v *validator) security() {
	f := v.f
	n, srv := f.NATS, f.Server
	for _, k := range []struct{ path, file string }{
		{"server.tls.cert", srv.TLS.Cert}, {"server.tls.key", srv.TLS.Key}, {"server.tls.ca", srv.TLS.CA},
		{"server.auth_file", srv.AuthFile},
		{"nats.creds", n.Creds}, {"nats.nkey", n.NKey},
		{"nats.tls.ca", n.TLS.CA}, {"nats.tls.cert", n.TLS.Cert}, {"nats.tls.key", n.TLS.Key},
	} {
		if k.file == "" {
			continue
		}
		if _, err := os.Stat(k.file); err != nil {
			reason := err.Error()
			if errors.Is(err, fs.ErrNotExist) {
				reason = "no such file"
			}
			v.add(k.path, "%s %q cannot be read: %s — give the path of an existing file (relative paths are from the working directory)", k.path, k.file, reason)
		}
	}
	if n.Domain != "" && n.APIPrefix != "" {
		v.add("nats.api_prefix", "nats.domain and nats.api_prefix are both set — a domain is the API prefix $JS.<domain>.API: set one of them")
	}

	if n.URL != "" {
		// External mode: nothing is embedded, so the server section has nothing to secure.
		for _, k := range []struct {
			path string
			set  bool
		}{
			{"server.tls", srv.TLS != (ServerTLS{})}, {"server.auth_file", srv.AuthFile != ""},
		} {
			if k.set {
				v.add(k.path, "%s is set, but nats.url selects external mode where no server is embedded — secure the external NATS itself, and remove %s (or nats.url)", k.path, k.path)
			}
		}
	} else {
		// Embedded mode: the node connects to its own server in-process. The COORD_NATS_*
		// variables are shared with the operator commands, which need them against a TLS
		// node, so only the file and flags are held to this.
		for _, k := range []struct {
			path, why string
			set       bool
			env       []string
		}{
			{"nats.creds", "a .creds file (JWT) needs an operator-mode NATS; the embedded server takes nats.user/password, nats.token, nats.nkey or users in server.auth_file", n.Creds != "", []string{"nats.creds"}},
			{"nats.tls", "the node reaches its embedded server in-process, without TLS; the server's own certificate is server.tls", n.TLS != (TLS{}), []string{"nats.tls.ca", "nats.tls.cert", "nats.tls.key"}},
			{"nats.domain", "it applies to an external NATS", n.Domain != "", []string{"nats.domain"}},
			{"nats.api_prefix", "it applies to an external NATS", n.APIPrefix != "", []string{"nats.api_prefix"}},
		} {
			if k.set && !v.onlyFromEnv(k.path, k.env...) {
				v.add(k.path, "%s is set without nats.url, so it would be ignored: %s — remove it, or set nats.url for external mode", k.path, k.why)
			}
		}
		if (srv.TLS.Cert == "") != (srv.TLS.Key == "") {
			v.add("server.tls", "server.tls needs both cert and key — set the missing one")
		}
		if srv.TLS.Cert == "" && (srv.TLS.CA != "" || srv.TLS.VerifyClients) {
			v.add("server.tls", "server.tls.ca or verify_clients is set without cert and key — the server needs its own certificate for TLS")
		}
		if srv.TLS.VerifyClients && srv.TLS.CA == "" {
			v.add("server.tls.verify_clients", "server.tls.verify_clients needs server.tls.ca, the CA that signs client certificates")
		}
		if srv.AuthFile != "" && n.Token != "" {
			// A user in the file may have a password, but a token is the server-wide
			// authorization token: it belongs in the file.
			v.add("nats.token", "nats.token is set with server.auth_file — put the token in the file's authorization block, and give this node a user: nats.user/password or nats.nkey")
		}
		if f.Cluster.Listen != "" && srv.TLS.Cert != "" && srv.TLS.CA == "" && !f.Insecure {
			v.add("server.tls.ca", "server.tls.ca is empty but cluster.listen is set — routes would accept any certificate a public CA signed: set server.tls.ca to the cluster's own CA (or set insecure: true)")
		}
	}

	if f.Insecure {
		return
	}
	if n.URL == "" {
		clientAuth := n.User != "" || n.Token != "" || n.NKey != "" || srv.AuthFile != "" || srv.TLS.VerifyClients
		if !clientAuth && !loopback(f.Node.Listen) {
			v.add("node.listen", "node.listen %q is reachable from other machines but clients need no authentication — set nats.user and nats.password (or COORD_NATS_USER/COORD_NATS_PASSWORD), nats.token, nats.nkey or server.auth_file; or listen on 127.0.0.1; or set insecure: true (--insecure) if the network is trusted", f.Node.Listen)
		}
		if f.Cluster.Listen != "" && srv.TLS.Cert == "" && !loopback(f.Cluster.Listen) {
			v.add("cluster.listen", "cluster.listen %q is reachable from other machines without TLS, so any nats-server could join the cluster and read or change every claim — set server.tls.cert, key and ca (routes then use mutual TLS); or listen on 127.0.0.1; or set insecure: true (--insecure) if the network is trusted", f.Cluster.Listen)
		}
	}
	if f.Node.HTTP != "" && f.Node.HTTPToken == "" && !loopback(f.Node.HTTP) {
		v.add("node.http", "node.http %q is reachable from other machines without authentication — set node.http_token (or COORD_HTTP_TOKEN; /healthz and /readyz stay open for probes); or serve on 127.0.0.1; or set insecure: true (--insecure)", f.Node.HTTP)
	}
}

// loopback reports whether the host of a HOST:PORT address is reachable from this machine
// only. An empty host counts: the listeners bind 127.0.0.1 then.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true // reported by the address check
	}
	if host == "" || strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// onlyFromEnv reports whether the setting at path (or its sub-keys) was set by the
// environment and not by the file.
func (v *validator) onlyFromEnv(path string, keys ...string) bool {
	if v.src.has(path) {
		return false
	}
	for _, k := range keys {
		if v.src.has(k) {
			return false
		}
	}
	for _, k := range keys {
		if _, ok := v.fromEnv[k]; ok {
			return true
		}
	}
	return false
}
