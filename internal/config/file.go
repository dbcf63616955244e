package config

import (
	"os"
	"reflect"
	"time"

	"github.com/jetcoord/coordinator/lease"
)

// Defaults. Each field's doc in File says which one applies and why.
const (
	DefaultData          = "./data"
	DefaultListen        = "127.0.0.1:4222"
	DefaultWeight        = 1
	DefaultNamespace     = "coord"
	DefaultTTL           = lease.DefaultTTL
	DefaultShutdownGrace = lease.DefaultShutdownGrace
	DefaultStopGrace     = 10 * time.Second
	DefaultCatchUpLimit  = 10
	DefaultTimezone      = "UTC"
	DefaultLogLevel      = "info"
	DefaultLogFormat     = "auto"
)

// DefaultRebalanceThreshold is ownership.DefaultRebalanceThreshold.
const DefaultRebalanceThreshold = 0.1

// File is the daemon's configuration file. A zero or empty value anywhere means "not set":
// Load and Parse replace it with the environment's value or the default (see the package
// doc), and Validate treats it as the default.
type File struct {
	Node    Node    `yaml:"node"`
	Cluster Cluster `yaml:"cluster"`
	// Server secures the embedded NATS server (embedded mode only): TLS for clients and
	// mutual TLS for routes, and who may connect.
	Server Server `yaml:"server"`
	// NATS is how this node connects as a NATS client. With NATS.URL set it selects
	// external mode (no server is embedded); without it, the node connects to its embedded
	// server in-process with these credentials, and they are also what the embedded server
	// requires from every client unless Server.AuthFile says otherwise.
	NATS NATS `yaml:"nats"`
	// Insecure allows, on purpose, a listener on a non-loopback address without
	// authentication: node.listen without client authentication, cluster.listen without
	// server.tls, node.http without node.http_token. Default false: such settings are
	// refused, so that nothing is exposed by accident.
	Insecure bool `yaml:"insecure"`
	// Namespace prefixes buckets, subjects and the event stream; clusters sharing one NATS
	// need different namespaces. Default "coord". Letters, digits, '-' and '_' only.
	Namespace string `yaml:"namespace"`
	// RebalanceThreshold: nodes hand workers over to even out the load only when some node
	// runs more or less than its share by more than this fraction of it (at least one
	// worker); then every node above its share hands the excess over.
	// Default 0.1. Higher: fewer moves after joins and restarts, a less even load. Use the
	// same value on every node.
	RebalanceThreshold float64 `yaml:"rebalance_threshold"`
	Timing             Timing  `yaml:"timing"`
	Log                Log     `yaml:"log"`
	// Workers are supervised commands, each running exactly once in the cluster.
	Workers []Worker `yaml:"workers"`
	// Jobs are cron jobs, each tick running exactly once in the cluster.
	Jobs []Job `yaml:"jobs"`

	// src remembers where each key was in the file, for Validate's line numbers; fromEnv
	// maps the paths ApplyEnv set to their variables. Both are nil for a File built in code.
	src     *source
	fromEnv map[string]string
}

// Node is this process.
type Node struct {
	// Name identifies the node in the cluster and names the embedded server. Default: the
	// host name, which is unique on VMs and Kubernetes pods but not when several nodes share
	// a machine.
	Name string `yaml:"name"`
	// Data is the embedded JetStream store. Default "./data". Keep it on local disk; two
	// nodes must never share it.
	Data string `yaml:"data"`
	// Listen is the embedded server's client address. Default "127.0.0.1:4222": reachable
	// from this machine only. A non-loopback address (0.0.0.0) needs client authentication
	// (nats.user/password, nats.token, nats.nkey, server.auth_file or
	// server.tls.verify_clients) unless insecure is set.
	Listen string `yaml:"listen"`
	// HTTP serves /healthz, /readyz, /metrics and /status, e.g. "127.0.0.1:8080". Default
	// "" (off). An empty host means 127.0.0.1. A non-loopback address needs HTTPToken
	// unless insecure is set.
	HTTP string `yaml:"http"`
	// HTTPToken, when set, is required as "Authorization: Bearer TOKEN" by /metrics and
	// /status; /healthz and /readyz stay open for probes (they reveal nothing). Default "".
	// Prefer COORD_HTTP_TOKEN over writing it here.
	HTTPToken string `yaml:"http_token"`
	// Weight is this node's share in placement relative to the others: 2 gets about twice
	// the workers of 1. Default 1.
	Weight int `yaml:"weight"`
}

// Cluster clusters the embedded servers. All empty: a single node.
type Cluster struct {
	// Listen is the route address other nodes connect to, e.g. "0.0.0.0:6222". Default ""
	// (no clustering).
	Listen string `yaml:"listen"`
	// Peers are seed routes, "host:port". Listing every node is simplest; one live seed is
	// enough to join.
	Peers []string `yaml:"peers"`
	// Discover finds peers through DNS, "dns:NAME[:PORT]" (a Kubernetes headless service);
	// PORT defaults to the port of Listen.
	Discover string `yaml:"discover"`
	// Size is how many JetStream servers to expect before JetStream starts. Default 0:
	// derived from the routes. Three is the smallest cluster that survives a failure.
	Size int `yaml:"size"`
	// Replicas of the buckets and the events stream. Default 0: min(3, cluster size) with
	// embedded servers, min(3, servers the NATS cluster reports) in external mode. Existing
	// buckets are raised to it, never lowered.
	Replicas int `yaml:"replicas"`
}

// NATS connects to an existing NATS deployment instead of embedding a server (external
// mode). At most one way to authenticate may be set.
type NATS struct {
	// URL of the NATS servers, comma separated, e.g. "nats://nats:4222". Default "":
	// embedded mode.
	URL string `yaml:"url"`
	// Creds is a .creds file (JWT and nkey seed).
	Creds string `yaml:"creds"`
	// NKey is a file holding an nkey seed.
	NKey     string `yaml:"nkey"`
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	Token    string `yaml:"token"`
	TLS      TLS    `yaml:"tls"`
	// Domain is the JetStream domain of the external NATS (a leaf node's or hub's
	// jetstream.domain), for when the coordinator's JetStream is not the local one.
	// Default "": the connection's own. External mode only.
	Domain string `yaml:"domain"`
	// APIPrefix is a JetStream API prefix imported from another account, e.g.
	// "$JS.hub.API" or "JS.acc.API". Default "": $JS.API. External mode only; at most one of
	// domain and api_prefix.
	APIPrefix string `yaml:"api_prefix"`
}

// Server secures the embedded server. All empty: no TLS, and clients authenticate with
// the nats section's credentials if any.
type Server struct {
	TLS ServerTLS `yaml:"tls"`
	// AuthFile is a nats-server configuration file whose authorization { } and accounts { }
	// blocks (and no_auth_user, system_account) decide who may connect and what they may
	// do, in nats-server's own syntax; nothing else may be in it. The node authenticates
	// with the nats section's credentials like any other client. Default "".
	AuthFile string `yaml:"auth_file"`
}

// ServerTLS names the embedded server's PEM files (cert-manager's names: tls.crt, tls.key,
// ca.crt). Cert and Key turn on TLS for clients and mutual TLS for routes: a server
// without a certificate that CA signed cannot join the cluster. The certificate must allow
// server and client use and name the hosts that peers and clients dial.
type ServerTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// CA signs the cluster's certificates; routes are verified against it (required with
	// cluster.listen), and so are client certificates with VerifyClients.
	CA string `yaml:"ca"`
	// VerifyClients requires clients to present a certificate that CA signed. Default
	// false.
	VerifyClients bool `yaml:"verify_clients"`
}

// TLS names PEM files. CA alone verifies the server; Cert and Key together add a client
// certificate.
type TLS struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Timing of leases. Zero values are derived from TTL (see Resolve), so that setting TTL
// alone gives a consistent set. Validate requires RenewInterval < RenewDeadline < TTL.
type Timing struct {
	// TTL: a claim not renewed for this long is dead, and crash failover takes about this
	// long. Default 15s, which rides out a JetStream leader election (up to ~9s) in a
	// three-node cluster; a single embedded node can use 3–5s.
	TTL Duration `yaml:"ttl"`
	// RenewInterval is how often the owner renews. Default TTL/5 (3s). Shorter costs more
	// writes; longer leaves fewer retries before RenewDeadline.
	RenewInterval Duration `yaml:"renew_interval"`
	// RenewDeadline: the owner stops its worker when no renewal has succeeded for this long.
	// Default TTL*4/5 (12s). RenewDeadline − RenewInterval should exceed the longest write
	// stall (~9s in a three-node cluster), or workers stop during leader elections.
	RenewDeadline Duration `yaml:"renew_deadline"`
	// FenceGrace is how long a worker that lost its lease may take to stop before it is
	// killed. Default TTL − RenewDeadline − min(0.5s, half that gap) (2.5s); RenewDeadline + FenceGrace must
	// stay below TTL.
	FenceGrace Duration `yaml:"fence_grace"`
	// ShutdownGrace bounds planned stops (shutdown, handoff); the claim is kept renewed
	// meanwhile. Default 30s.
	ShutdownGrace Duration `yaml:"shutdown_grace"`
}

// Resolve returns t with every zero field replaced by its default or derived value, by the
// one rule for lease timings (lease.Timing.Derive).
func (t Timing) Resolve() Timing { return fromLease(t.Lease().Derive()) }

// Lease returns t as the lease package's Timing, as set (zero fields not derived). The
// daemon hands it, resolved, to the ownership engine, the scheduler and the watchdog.
func (t Timing) Lease() lease.Timing {
	return lease.Timing{TTL: time.Duration(t.TTL), RenewInterval: time.Duration(t.RenewInterval),
		RenewDeadline: time.Duration(t.RenewDeadline), FenceGrace: time.Duration(t.FenceGrace),
		ShutdownGrace: time.Duration(t.ShutdownGrace)}
}

func fromLease(l lease.Timing) Timing {
	return Timing{TTL: Duration(l.TTL), RenewInterval: Duration(l.RenewInterval), RenewDeadline: Duration(l.RenewDeadline),
		FenceGrace: Duration(l.FenceGrace), ShutdownGrace: Duration(l.ShutdownGrace)}
}

// Log configures the daemon's log.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is auto (coloured text on a terminal, JSON otherwise), text or json. Default
	// auto.
	Format string `yaml:"format"`
}

// Restart says when a supervised command is started again after it exits while its node
// still owns it.
type Restart string

const (
	RestartAlways    Restart = "always"     // the default: a worker is meant to run
	RestartOnFailure Restart = "on-failure" // exit 0 means done until the next owner change
	RestartNever     Restart = "never"
)

// Worker is a supervised command that runs exactly once in the cluster.
type Worker struct {
	// Name is the worker's key in the store: [A-Za-z0-9_-] and '.', 1–128 characters,
	// unique across workers and jobs.
	Name string `yaml:"name"`
	// Command to run; required.
	Command Command `yaml:"command"`
	// Env is added to the coordinator's own environment, which the command inherits; the
	// coordinator also sets COORD_WORKER, COORD_NODE and COORD_TOKEN.
	Env map[string]string `yaml:"env"`
	// Dir is the working directory. Default: the coordinator's.
	Dir string `yaml:"dir"`
	// Restart policy. Default always.
	Restart Restart `yaml:"restart"`
	// StopSignal asks the command to stop. Default SIGTERM.
	StopSignal Signal `yaml:"stop_signal"`
	// StopGrace is how long the command may take to stop before it is killed. Default 10s.
	// A lost lease allows only Timing.FenceGrace.
	StopGrace Duration `yaml:"stop_grace"`
	// Call makes the worker reachable on <ns>.call.<name> while this node owns it: each
	// request runs this command with the request on stdin; its stdout is the reply, a
	// non-zero exit an error (with its stderr). Default none (requests get no responder).
	Call Command `yaml:"call"`
}

// Overlap says what a job tick does while the previous run is still going.
type Overlap string

const (
	OverlapSkip    Overlap = "skip"    // the default: the new tick is skipped (event "skipped")
	OverlapAllow   Overlap = "allow"   // both run
	OverlapReplace Overlap = "replace" // the old run is stopped, the new one starts
)

// CatchUp says what happens to ticks that no node ran (the whole cluster was down).
type CatchUp string

const (
	CatchUpNone CatchUp = "none" // the default: missed ticks are reported, not run
	CatchUpLast CatchUp = "last" // the latest missed tick runs once
	CatchUpAll  CatchUp = "all"  // every missed tick runs, up to CatchUpLimit
)

// Job is a cron job: each tick runs exactly once in the cluster.
type Job struct {
	// Name is the job's key in the store: [A-Za-z0-9_-] and '.', 1–128 characters, unique
	// across workers and jobs.
	Name string `yaml:"name"`
	// Schedule in robfig/cron/v3 syntax: five fields, an optional leading seconds field,
	// or a descriptor (@hourly, @every 10m). Required.
	Schedule string `yaml:"schedule"`
	// Timezone of the schedule, an IANA name. Default UTC: every node must compute the same
	// ticks, so the machines' local zones are not used ("Local" is refused).
	Timezone string `yaml:"timezone"`
	// Command to run; required. It also gets COORD_JOB and COORD_TICK.
	Command Command `yaml:"command"`
	// Env and Dir are as for Worker.
	Env map[string]string `yaml:"env"`
	Dir string            `yaml:"dir"`
	// Timeout stops a run that takes longer. Default 0: no timeout.
	Timeout Duration `yaml:"timeout"`
	// Overlap policy. Default skip.
	Overlap Overlap `yaml:"overlap"`
	// CatchUp policy for missed ticks. Default none.
	CatchUp CatchUp `yaml:"catch_up"`
	// CatchUpLimit caps catch_up: all. Default 10.
	CatchUpLimit int `yaml:"catch_up_limit"`
	// RetryLost runs a tick again when the node running it died before it finished.
	// Default false: a tick runs at most once, and a lost run is reported as failed.
	RetryLost bool `yaml:"retry_lost"`
	// StopSignal and StopGrace are as for Worker (used by timeout and replace).
	StopSignal Signal   `yaml:"stop_signal"`
	StopGrace  Duration `yaml:"stop_grace"`
}

// Default returns the configuration used when there is no file: a single embedded node
// named after the host, storing under ./data and serving 127.0.0.1:4222. Timing fields
// that are derived from the TTL are left 0; Timing.Resolve fills them in.
func Default() File {
	return File{
		Node: Node{
			Name:   hostName(),
			Data:   DefaultData,
			Listen: DefaultListen,
			Weight: DefaultWeight,
		},
		Namespace:          DefaultNamespace,
		RebalanceThreshold: DefaultRebalanceThreshold,
		Timing: Timing{
			TTL:           Duration(DefaultTTL),
			ShutdownGrace: Duration(DefaultShutdownGrace),
		},
		Log: Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
	}
}

// DefaultWorker returns a Worker with every default set; add Name and Command.
func DefaultWorker() Worker {
	return Worker{
		Restart:    RestartAlways,
		StopSignal: DefaultStopSignal,
		StopGrace:  Duration(DefaultStopGrace),
	}
}

// DefaultJob returns a Job with every default set; add Name, Schedule and Command.
func DefaultJob() Job {
	return Job{
		Timezone:     DefaultTimezone,
		Overlap:      OverlapSkip,
		CatchUp:      CatchUpNone,
		CatchUpLimit: DefaultCatchUpLimit,
		StopSignal:   DefaultStopSignal,
		StopGrace:    Duration(DefaultStopGrace),
	}
}

// SetDefaults replaces zero values with defaults, in every section and in every worker
// and job. Timing values derived from the TTL stay 0 (see Timing.Resolve), so that a TTL
// changed later still carries them along. Load and Parse call it.
func (f *File) SetDefaults() {
	fillZero(reflect.ValueOf(f).Elem(), reflect.ValueOf(Default()))
	for i := range f.Workers {
		fillZero(reflect.ValueOf(&f.Workers[i]).Elem(), reflect.ValueOf(DefaultWorker()))
	}
	for i := range f.Jobs {
		fillZero(reflect.ValueOf(&f.Jobs[i]).Elem(), reflect.ValueOf(DefaultJob()))
	}
}

// fillZero sets every empty field of dst (a struct) to the same field of def, descending
// into nested structs.
func fillZero(dst, def reflect.Value) {
	for i := range dst.NumField() {
		if !dst.Type().Field(i).IsExported() {
			continue
		}
		d := dst.Field(i)
		if d.Kind() == reflect.Struct {
			fillZero(d, def.Field(i))
			continue
		}
		if isEmpty(d) {
			d.Set(def.Field(i))
		}
	}
}

// overlay sets every non-empty field of src (a struct) on dst, descending into nested
// structs: the values a file sets win over the environment and the defaults.
func overlay(dst, src reflect.Value) {
	for i := range dst.NumField() {
		if !dst.Type().Field(i).IsExported() {
			continue
		}
		s := src.Field(i)
		if s.Kind() == reflect.Struct {
			overlay(dst.Field(i), s)
			continue
		}
		if !isEmpty(s) {
			dst.Field(i).Set(s)
		}
	}
}

// isEmpty is the "not set" of the package doc: zero, or an empty list or map.
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return v.IsZero()
}

func hostName() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "coordinator"
}
