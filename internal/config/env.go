package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// envVar is one COORD_* variable: the File path it sets, for messages, and how.
type envVar struct {
	name, path string
	set        func(f *File, v string) error
}

func setString(p func(f *File) *string) func(*File, string) error {
	return func(f *File, v string) error { *p(f) = v; return nil }
}

func setInt(p func(f *File) *int) func(*File, string) error {
	return func(f *File, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("expected a whole number, got %q", v)
		}
		*p(f) = n
		return nil
	}
}

// envVars are the variables ApplyEnv reads, in the order of the File.
var envVars = []envVar{
	{"COORD_NAME", "node.name", setString(func(f *File) *string { return &f.Node.Name })},
	{"COORD_DATA", "node.data", setString(func(f *File) *string { return &f.Node.Data })},
	{"COORD_LISTEN", "node.listen", setString(func(f *File) *string { return &f.Node.Listen })},
	{"COORD_HTTP", "node.http", setString(func(f *File) *string { return &f.Node.HTTP })},
	{"COORD_HTTP_TOKEN", "node.http_token", setString(func(f *File) *string { return &f.Node.HTTPToken })},
	{"COORD_WEIGHT", "node.weight", setInt(func(f *File) *int { return &f.Node.Weight })},
	{"COORD_CLUSTER_LISTEN", "cluster.listen", setString(func(f *File) *string { return &f.Cluster.Listen })},
	{"COORD_PEERS", "cluster.peers", func(f *File, v string) error {
		f.Cluster.Peers = nil
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				f.Cluster.Peers = append(f.Cluster.Peers, p)
			}
		}
		return nil
	}},
	{"COORD_DISCOVER", "cluster.discover", setString(func(f *File) *string { return &f.Cluster.Discover })},
	{"COORD_CLUSTER_SIZE", "cluster.size", setInt(func(f *File) *int { return &f.Cluster.Size })},
	{"COORD_SERVER_TLS_CERT", "server.tls.cert", setString(func(f *File) *string { return &f.Server.TLS.Cert })},
	{"COORD_SERVER_TLS_KEY", "server.tls.key", setString(func(f *File) *string { return &f.Server.TLS.Key })},
	{"COORD_SERVER_TLS_CA", "server.tls.ca", setString(func(f *File) *string { return &f.Server.TLS.CA })},
	{"COORD_SERVER_AUTH_FILE", "server.auth_file", setString(func(f *File) *string { return &f.Server.AuthFile })},
	{"COORD_NATS_URL", "nats.url", setString(func(f *File) *string { return &f.NATS.URL })},
	{"COORD_NATS_CREDS", "nats.creds", setString(func(f *File) *string { return &f.NATS.Creds })},
	{"COORD_NATS_NKEY", "nats.nkey", setString(func(f *File) *string { return &f.NATS.NKey })},
	{"COORD_NATS_USER", "nats.user", setString(func(f *File) *string { return &f.NATS.User })},
	{"COORD_NATS_PASSWORD", "nats.password", setString(func(f *File) *string { return &f.NATS.Password })},
	{"COORD_NATS_TOKEN", "nats.token", setString(func(f *File) *string { return &f.NATS.Token })},
	{"COORD_NATS_TLS_CA", "nats.tls.ca", setString(func(f *File) *string { return &f.NATS.TLS.CA })},
	{"COORD_NATS_TLS_CERT", "nats.tls.cert", setString(func(f *File) *string { return &f.NATS.TLS.Cert })},
	{"COORD_NATS_TLS_KEY", "nats.tls.key", setString(func(f *File) *string { return &f.NATS.TLS.Key })},
	{"COORD_NATS_DOMAIN", "nats.domain", setString(func(f *File) *string { return &f.NATS.Domain })},
	{"COORD_NATS_API_PREFIX", "nats.api_prefix", setString(func(f *File) *string { return &f.NATS.APIPrefix })},
	{"COORD_INSECURE", "insecure", func(f *File, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("expected true or false, got %q", v)
		}
		f.Insecure = b
		return nil
	}},
	{"COORD_NAMESPACE", "namespace", setString(func(f *File) *string { return &f.Namespace })},
	{"COORD_TTL", "timing.ttl", func(f *File, v string) error { return f.Timing.TTL.UnmarshalText([]byte(v)) }},
	{"COORD_LOG_LEVEL", "log.level", setString(func(f *File) *string { return &f.Log.Level })},
	{"COORD_LOG_FORMAT", "log.format", setString(func(f *File) *string { return &f.Log.Format })},
}

// EnvNames lists the COORD_* variables that ApplyEnv reads.
func EnvNames() []string {
	names := make([]string, len(envVars))
	for i, v := range envVars {
		names[i] = v.name
	}
	return names
}

// ApplyEnv sets the fields named by COORD_* variables that getenv returns non-empty (nil
// means os.Getenv). Load and Parse apply it to the defaults before the file, so a value in
// the file wins; call it yourself only on a File built in code. A value that cannot be
// parsed is reported in an *Error that lists them all; the others are still applied.
func (f *File) ApplyEnv(getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	var problems []Problem
	fromEnv := map[string]string{} // a new map: copies of f share the old one
	for path, name := range f.fromEnv {
		fromEnv[path] = name
	}
	for _, ev := range envVars {
		v := getenv(ev.name)
		if v == "" {
			continue
		}
		if err := ev.set(f, v); err != nil {
			problems = append(problems, Problem{Msg: fmt.Sprintf("environment %s: %v", ev.name, err)})
			continue
		}
		fromEnv[ev.path] = ev.name
	}
	f.fromEnv = fromEnv
	if len(problems) > 0 {
		return &Error{Problems: problems}
	}
	return nil
}
