package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jetcoord/coordinator/internal/tzdata"
	"github.com/jetcoord/coordinator/lease"
	"github.com/jetcoord/coordinator/scheduler"
)

// Validate checks every setting and every cross-field rule, and reports all problems at
// once in an *Error, with file:line positions for a File that came from Load or Parse.
// Zero values count as their defaults. Rules: durations are not negative; RenewInterval <
// RenewDeadline < TTL and RenewDeadline + FenceGrace < TTL after deriving; names are valid
// and unique across workers and jobs; every worker and job has a command; enums, signals,
// addresses, cron schedules and time zones parse.
func (f File) Validate() error {
	g := f
	g.Workers = append([]Worker(nil), f.Workers...)
	g.Jobs = append([]Job(nil), f.Jobs...)
	g.SetDefaults()
	v := &validator{f: &g, src: f.src, fromEnv: f.fromEnv}
	v.node()
	v.cluster()
	v.nats()
	v.security()
	v.namespace()
	v.rebalanceThreshold()
	v.timing()
	v.log()
	v.items()
	if len(v.problems) == 0 {
		return nil
	}
	return &Error{Problems: sortProblems(v.problems)}
}

type validator struct {
	f        *File
	src      *source
	fromEnv  map[string]string
	problems []Problem
}

// add records a problem with the setting at path, unless decoding it already failed. A
// setting that came from the environment, not the file, is reported as such.
func (v *validator) add(path, format string, args ...any) {
	if v.src.isBad(path) {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if name, ok := v.fromEnv[path]; ok && !v.src.has(path) {
		v.problems = append(v.problems, Problem{Msg: "environment " + name + ": " + msg})
		return
	}
	p := Problem{Msg: msg}
	if v.src != nil {
		p.File, p.Line = v.src.name, v.src.line(path)
	}
	v.problems = append(v.problems, p)
}

func (v *validator) node() {
	n := v.f.Node
	if err := checkName("node.name", n.Name); err != nil {
		v.add("node.name", "%v", err)
	}
	v.address("node.listen", n.Listen, "127.0.0.1:4222")
	if n.HTTP != "" {
		v.address("node.http", n.HTTP, "127.0.0.1:8080")
	}
	if n.Weight < 0 {
		v.add("node.weight", "node.weight is %d — use a positive number (default %d)", n.Weight, DefaultWeight)
	}
}

// address checks a host:port setting.
func (v *validator) address(path, value, example string) {
	if reason := hostPortReason(value); reason != "" {
		v.add(path, "invalid %s %q: %s — write host:port, e.g. %s", path, value, reason, example)
	}
}

func hostPortReason(s string) string {
	if strings.Contains(s, "://") {
		return "no scheme here"
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return ae.Err
		}
		return err.Error()
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Sprintf("port %q is not a number from 0 to 65535", port)
	}
	return ""
}

func (v *validator) cluster() {
	c := v.f.Cluster
	if c.Listen != "" {
		v.address("cluster.listen", c.Listen, "0.0.0.0:6222")
	}
	for i, p := range c.Peers {
		if reason := hostPortReason(p); reason != "" {
			path := fmt.Sprintf("cluster.peers[%d]", i)
			v.add(path, "invalid %s %q: %s — write host:port of another node's cluster.listen, e.g. 10.0.0.2:6222", path, p, reason)
		}
	}
	if c.Discover != "" {
		if reason := discoverReason(c.Discover); reason != "" {
			v.add("cluster.discover", "invalid cluster.discover %q: %s — write dns:NAME or dns:NAME:PORT, e.g. dns:coordinator.default.svc.cluster.local:6222", c.Discover, reason)
		}
	}
	if c.Size < 0 {
		v.add("cluster.size", "cluster.size is %d — use 0 (derived from the routes) or the number of servers, e.g. 3", c.Size)
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		v.add("cluster.replicas", "cluster.replicas is %d — use 0 (derived), 1, 3 or 5 (JetStream allows at most 5)", c.Replicas)
	}
	if c.Listen == "" {
		for _, k := range []struct {
			path string
			set  bool
		}{{"cluster.peers", len(c.Peers) > 0}, {"cluster.discover", c.Discover != ""}, {"cluster.size", c.Size > 0}} {
			if k.set {
				v.add(k.path, "%s is set but cluster.listen is empty, so this node does not cluster — set cluster.listen (e.g. 0.0.0.0:6222) or remove %s", k.path, k.path)
			}
		}
	}
	if v.f.NATS.URL != "" && (c.Listen != "" || len(c.Peers) > 0 || c.Discover != "") {
		v.add("cluster", "cluster settings are set, but nats.url selects external mode where no server is embedded — remove the cluster settings or nats.url")
	}
}

func discoverReason(s string) string {
	rest, ok := strings.CutPrefix(s, "dns:")
	if !ok {
		return `must start with "dns:"`
	}
	name := rest
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		name = rest[:i]
		if n, err := strconv.Atoi(rest[i+1:]); err != nil || n <= 0 || n > 65535 {
			return fmt.Sprintf("port %q is not a number from 1 to 65535", rest[i+1:])
		}
	}
	if name == "" {
		return "the DNS name is missing"
	}
	if strings.ContainsAny(name, " /:") {
		return fmt.Sprintf("%q is not a DNS name", name)
	}
	return ""
}

func (v *validator) nats() {
	n := v.f.NATS
	if n.URL != "" {
		for _, u := range strings.Split(n.URL, ",") {
			if reason := natsURLReason(strings.TrimSpace(u)); reason != "" {
				v.add("nats.url", "invalid nats.url %q: %s — write nats://host:4222 (several separated by commas)", u, reason)
			}
		}
	}
	var methods []string
	for _, m := range []struct {
		path string
		set  bool
	}{
		{"nats.creds", n.Creds != ""},
		{"nats.nkey", n.NKey != ""},
		{"nats.user", n.User != "" || n.Password != ""},
		{"nats.token", n.Token != ""},
	} {
		if m.set {
			methods = append(methods, m.path)
		}
	}
	if len(methods) > 1 {
		v.add(methods[1], "%s are all set — use only one way to authenticate to NATS", strings.Join(methods, ", "))
	}
	if n.Password != "" && n.User == "" {
		v.add("nats.password", "nats.password is set without nats.user — add user:")
	}
	if n.User != "" && n.Password == "" {
		v.add("nats.user", "nats.user is set without nats.password — add password: (or COORD_NATS_PASSWORD)")
	}
	if (n.TLS.Cert == "") != (n.TLS.Key == "") {
		v.add("nats.tls", "nats.tls needs both cert and key for a client certificate, or neither — set the missing one")
	}
}

func natsURLReason(u string) string {
	if u == "" {
		return "an empty entry"
	}
	if !strings.Contains(u, "://") {
		return "" // nats.go adds nats:// and the default port
	}
	parsed, err := url.Parse(u)
	if err != nil {
		return err.Error()
	}
	switch parsed.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Sprintf("scheme %q is not one of nats, tls, ws, wss", parsed.Scheme)
	}
	if parsed.Host == "" {
		return "the host is missing"
	}
	return ""
}

func (v *validator) rebalanceThreshold() {
	if t := v.f.RebalanceThreshold; t < 0 || t != t {
		v.add("rebalance_threshold", "rebalance_threshold is %v — use 0 or more (default %v; larger moves fewer workers)", t, DefaultRebalanceThreshold)
	}
}

func (v *validator) namespace() {
	for _, r := range v.f.Namespace {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			v.add("namespace", "invalid namespace %q: %s is not allowed (use letters, digits, '-' and '_'; it prefixes bucket and stream names)", v.f.Namespace, describeRune(r))
			return
		}
	}
}

func (v *validator) timing() {
	t := v.f.Timing
	negative := false
	for _, d := range []struct {
		key string
		val Duration
	}{
		{"ttl", t.TTL}, {"renew_interval", t.RenewInterval}, {"renew_deadline", t.RenewDeadline},
		{"fence_grace", t.FenceGrace}, {"shutdown_grace", t.ShutdownGrace},
	} {
		if d.val < 0 {
			negative = true
			v.add("timing."+d.key, "timing.%s is negative (%s) — use a positive duration, or 0 for the default", d.key, d.val)
		}
	}
	if negative || v.src.badUnder("timing") {
		return // the order checks would only repeat the problem
	}
	r := t.Resolve()
	// show says a value and where it came from, as the user must change what they wrote.
	show := func(key string, set Duration, got Duration, derived string) string {
		if set != 0 {
			return fmt.Sprintf("timing.%s (%s)", key, got)
		}
		return fmt.Sprintf("timing.%s (%s, derived: %s)", key, got, derived)
	}
	// at is the first of keys that the file sets, else timing.ttl.
	at := func(keys ...string) string {
		for _, k := range keys {
			if v.src.has("timing."+k) || v.fromEnv["timing."+k] != "" {
				return "timing." + k
			}
		}
		return "timing.ttl"
	}
	ttl := show("ttl", t.TTL, r.TTL, "default")
	interval := show("renew_interval", t.RenewInterval, r.RenewInterval, "ttl/5")
	deadline := show("renew_deadline", t.RenewDeadline, r.RenewDeadline, "ttl*4/5")
	grace := show("fence_grace", t.FenceGrace, r.FenceGrace, "ttl − renew_deadline − min(0.5s, half the gap)")
	// The rule is lease.Timing.Validate's, as for the engine, the scheduler and the
	// watchdog; only the wording is the file's.
	var te *lease.TimingError
	if !errors.As(t.Lease().Validate(), &te) {
		return
	}
	switch te.Rule {
	case lease.RuleTTLTooShort:
		v.add("timing.ttl", "%s is too short — use at least %v (store entries expire in whole seconds)", ttl, lease.MinTTL)
	case lease.RuleIntervalBeforeDeadline:
		v.add(at("renew_interval", "renew_deadline"), "%s must be shorter than %s, or the owner stops its worker before it even tries to renew — lower renew_interval or raise renew_deadline", interval, deadline)
	case lease.RuleDeadlineBeforeTTL:
		v.add(at("renew_deadline", "ttl"), "%s must be shorter than %s, or a worker can still run when another node takes over — lower renew_deadline or raise ttl", deadline, ttl)
	case lease.RuleFenceBeforeTTL:
		v.add(at("fence_grace", "renew_deadline", "ttl"), "%s + %s must stay below %s, or a new owner may start before the old worker is killed — lower fence_grace below %s", deadline, grace, ttl, r.TTL-r.RenewDeadline)
	default:
		v.add("timing", "%v", te)
	}
}

func (v *validator) log() {
	l := v.f.Log
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", "invalid log.level %q — use debug, info, warn or error", l.Level)
	}
	switch l.Format {
	case "auto", "text", "json":
	default:
		v.add("log.format", "invalid log.format %q — use auto, text or json", l.Format)
	}
}

// seenName is where a worker or job name was first used.
type seenName struct {
	label string
	line  int
}

func (v *validator) items() {
	seen := map[string]seenName{}
	for i, w := range v.f.Workers {
		p := fmt.Sprintf("workers[%d]", i)
		v.name(seen, p, "worker", w.Name)
		v.command(p, w.Name, w.Command, `add command: ["/path/to/program", "arg"]`)
		v.env(p, w.Name, w.Env)
		switch w.Restart {
		case RestartAlways, RestartOnFailure, RestartNever:
		default:
			v.add(p+".restart", "%s: invalid restart %q — use always, on-failure or never", subject(p, w.Name), w.Restart)
		}
		v.stop(p, w.Name, w.StopSignal, w.StopGrace)
	}
	for i, j := range v.f.Jobs {
		p := fmt.Sprintf("jobs[%d]", i)
		v.name(seen, p, "job", j.Name)
		v.schedule(p, j.Name, j.Schedule)
		v.timezone(p, j.Name, j.Timezone)
		v.command(p, j.Name, j.Command, `add command: ["/path/to/program", "arg"]`)
		v.env(p, j.Name, j.Env)
		if j.Timeout < 0 {
			v.add(p+".timeout", "%s: timeout is negative (%s) — use a positive duration, or 0 for none", subject(p, j.Name), j.Timeout)
		}
		switch j.Overlap {
		case OverlapSkip, OverlapAllow, OverlapReplace:
		default:
			v.add(p+".overlap", "%s: invalid overlap %q — use skip, allow or replace", subject(p, j.Name), j.Overlap)
		}
		switch j.CatchUp {
		case CatchUpNone, CatchUpLast, CatchUpAll:
		default:
			v.add(p+".catch_up", "%s: invalid catch_up %q — use none, last or all", subject(p, j.Name), j.CatchUp)
		}
		if j.CatchUpLimit < 0 {
			v.add(p+".catch_up_limit", "%s: catch_up_limit is %d — use a positive number (default %d)", subject(p, j.Name), j.CatchUpLimit, DefaultCatchUpLimit)
		}
		v.stop(p, j.Name, j.StopSignal, j.StopGrace)
	}
}

func (v *validator) name(seen map[string]seenName, p, kind, name string) {
	if name == "" {
		v.add(p+".name", "%s: name is missing — add name: %s-name (letters, digits, '-', '_' and '.')", p, kind)
		return
	}
	if err := checkName(kind+" name", name); err != nil {
		v.add(p+".name", "%s: %v", p, err)
		return
	}
	line := v.src.line(p + ".name")
	if first, ok := seen[name]; ok {
		where := first.label
		if first.line > 0 {
			where += fmt.Sprintf(" (line %d)", first.line)
		}
		v.add(p+".name", "%s: name %q is already used by %s — names must be unique across workers and jobs; rename one of them", subject(p, name), name, where)
		return
	}
	seen[name] = seenName{label: p, line: line}
}

func (v *validator) command(p, name string, c Command, fix string) {
	switch {
	case len(c) == 0:
		v.add(p+".command", "%s: command is missing — %s", subject(p, name), fix)
	case strings.TrimSpace(c[0]) == "":
		v.add(p+".command", "%s: command has an empty program name — put the program first: [\"/path/to/program\", \"arg\"]", subject(p, name))
	}
}

// reserved are set by the coordinator for every supervised command.
var reserved = []string{"COORD_WORKER", "COORD_NODE", "COORD_TOKEN", "COORD_JOB", "COORD_TICK"}

func (v *validator) env(p, name string, env map[string]string) {
	for k := range env {
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			v.add(p+".env", "%s: invalid env name %q — names cannot be empty or contain '='", subject(p, name), k)
		case contains(reserved, k):
			v.add(p+".env."+k, "%s: env %s is set by the coordinator — choose another name (reserved: %s)", subject(p, name), k, strings.Join(reserved, ", "))
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (v *validator) stop(p, name string, sig Signal, grace Duration) {
	if !knownSignal(sig) {
		v.add(p+".stop_signal", "%s: unknown stop_signal %d — use one of %s", subject(p, name), int(sig), strings.Join(signalList(), ", "))
	}
	if grace < 0 {
		v.add(p+".stop_grace", "%s: stop_grace is negative (%s) — use a positive duration, or 0 for the default %s", subject(p, name), grace, Duration(DefaultStopGrace))
	}
}

func knownSignal(s Signal) bool {
	for _, sig := range signalNames {
		if Signal(sig) == s {
			return true
		}
	}
	return false
}

const cronDoc = "see https://pkg.go.dev/github.com/robfig/cron/v3"

func (v *validator) schedule(p, name, spec string) {
	path := p + ".schedule"
	switch {
	case strings.TrimSpace(spec) == "":
		v.add(path, `%s: schedule is missing — add schedule: "0 * * * *" (hourly) or "@every 10m"; %s`, subject(p, name), cronDoc)
		return
	case strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ="):
		zone, rest, _ := strings.Cut(spec, " ")
		_, zone, _ = strings.Cut(zone, "=")
		v.add(path, "%s: schedule %q sets a time zone — write timezone: %s and schedule: %q instead", subject(p, name), spec, zone, strings.TrimSpace(rest))
		return
	}
	// The scheduler's own parser, so that check and run never disagree.
	if _, err := scheduler.ParseSchedule(spec, time.UTC); err != nil {
		v.add(path, "%s: %s — %s", subject(p, name), strings.TrimPrefix(err.Error(), "scheduler: "), cronDoc)
	}
}

func (v *validator) timezone(p, name, tz string) {
	switch tz {
	case "Local":
		v.add(p+".timezone", "%s: timezone Local is the machine's zone, which may differ between nodes — name the zone, e.g. Europe/Berlin, or use UTC", subject(p, name))
		return
	}
	if _, err := tzdata.Load(tz); err != nil { // as the scheduler loads it: the embedded database

		v.add(p+".timezone", "%s: unknown timezone %q — use an IANA name such as UTC, Europe/Berlin or America/New_York", subject(p, name), tz)
	}
}
