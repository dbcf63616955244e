package config

import (
	"strings"
	"testing"
)

// worker and job make a valid item with one key replaced or added.
const okWorker = `
workers:
  - name: w
    command: [/bin/true]
`

// Every kind of problem: where it is reported and what the message says.
func TestProblems(t *testing.T) {
	for _, c := range []struct {
		name  string
		yaml  string
		line  int
		words []string
	}{
		// Syntax and structure.
		{"syntax tab", "node:\n\tname: a\n", 2, []string{"YAML syntax error", "tabs", "spaces"}},
		{"syntax", "node: [a\n", 1, []string{"YAML syntax error"}},
		{"root not a mapping", "- a\n- b\n", 1, []string{"the file must be a mapping", "got a list", `start with keys like "node:"`}},
		{"second document", "namespace: a\n---\nnamespace: b\n", 2, []string{"second YAML document", "'---'"}},
		{"duplicate key", "timing:\n  ttl: 5s\n  ttl: 6s\n", 3, []string{`key "ttl" is set twice in timing`, "first at line 2", "remove one"}},
		{"duplicate env key", "workers:\n  - name: w\n    command: [x]\n    env:\n      A: 1\n      A: 2\n", 6, []string{`key "A" is set twice`, `workers[0] "w": env`, "first at line 5"}},

		// Unknown keys.
		{"unknown key in worker", okWorker + "    foo: 1\n", 5, []string{`unknown key "foo" in workers[0] "w"`, "valid keys: name, command, env, dir, restart, stop_signal, stop_grace"}},
		{"unknown top-level key", "\nfoo: 1\n", 2, []string{`unknown key "foo" at the top level`, "valid keys: node, cluster, server, nats, insecure, namespace, rebalance_threshold, timing, log, workers, jobs"}},
		{"misspelt key", "timing:\n  renewinterval: 1s\n", 2, []string{`unknown key "renewinterval" in timing`, "did you mean renew_interval?"}},
		{"hyphenated key", okWorker + "    stop-grace: 1s\n", 5, []string{`unknown key "stop-grace"`, "did you mean stop_grace?"}},
		{"key in the wrong section", "ttl: 5s\n", 1, []string{`unknown key "ttl" at the top level`, "ttl belongs in timing:"}},
		{"job key in a worker", okWorker + "    schedule: '@hourly'\n", 5, []string{`unknown key "schedule"`, "belongs in a jobs: entry"}},
		{"unknown key in nats.tls", "nats:\n  tls:\n    cafile: x\n", 3, []string{`unknown key "cafile" in nats.tls`, "valid keys: ca, cert, key"}},

		// Types.
		{"ttl list", "timing:\n  ttl: [1]\n", 2, []string{"timing.ttl: expected a duration like 15s, got a list"}},
		{"ttl mapping", "timing:\n  ttl: {a: 1}\n", 2, []string{"timing.ttl: expected a duration", "got a mapping"}},
		{"int", "node:\n  weight: heavy\n", 2, []string{`node.weight: expected a whole number, got "heavy"`, "weight: 2"}},
		{"section scalar", "node: 5\n", 1, []string{`node: expected a mapping of key: value lines, got "5" — write its keys on the lines below it, indented`}},
		{"workers mapping", "workers: {a: b}\n", 1, []string{"workers: expected a list of workers", `"- name:"`, "got a mapping"}},
		{"worker scalar", "workers: [billing]\n", 1, []string{`workers[0]: expected a mapping`, `got "billing"`}},
		{"peer mapping", "cluster:\n  listen: :6222\n  peers:\n    - {a: b}\n", 4, []string{"cluster.peers[0]: expected a string, got a mapping", "peers: ["}},
		{"bool", "jobs:\n  - name: j\n    schedule: '@hourly'\n    command: [x]\n    retry_lost: maybe\n", 5, []string{`jobs[0] "j": retry_lost: expected true or false, got "maybe"`}},
		{"command mapping", "workers:\n  - name: w\n    command: {a: b}\n", 3, []string{`workers[0] "w": command: expected a list of arguments or a shell command string, got a mapping`}},
		{"command nested list", "workers:\n  - name: w\n    command: [a, [b]]\n", 3, []string{`workers[0] "w": command[1]: expected a string in the argument list, got a list`}},

		// Durations.
		{"bad duration", "timing:\n  ttl: 15 parsecs\n", 2, []string{`timing.ttl: invalid duration "15 parsecs"`, `unknown unit " parsecs"`, "e.g. 15s"}},
		{"duration without unit", "timing:\n  shutdown_grace: 30\n", 2, []string{`invalid duration "30": missing unit`, "30s"}},
		{"duration in days", okWorker + "    stop_grace: 1d\n", 5, []string{`workers[0] "w": stop_grace: invalid duration "1d"`, "24h"}},
		{"negative duration", "timing:\n  shutdown_grace: -1s\n", 2, []string{"timing.shutdown_grace is negative (-1s)"}},
		{"negative stop_grace", okWorker + "    stop_grace: -2s\n", 5, []string{`workers[0] "w": stop_grace is negative (-2s)`}},
		{"negative timeout", "jobs:\n  - name: j\n    schedule: '@hourly'\n    command: [x]\n    timeout: -1s\n", 5, []string{`jobs[0] "j": timeout is negative`}},

		// Timing order.
		{"interval not below deadline", "timing:\n  ttl: 10s\n  renew_interval: 9s\n", 3, []string{"timing.renew_interval (9s) must be shorter than timing.renew_deadline (8s, derived: ttl*4/5)"}},
		{"deadline not below ttl", "timing:\n  ttl: 10s\n  renew_deadline: 10s\n", 3, []string{"timing.renew_deadline (10s) must be shorter than timing.ttl (10s)"}},
		{"fence grace too long", "timing:\n  ttl: 10s\n  fence_grace: 3s\n", 3, []string{"timing.renew_deadline (8s, derived: ttl*4/5) + timing.fence_grace (3s) must stay below timing.ttl (10s)", "below 2s"}},
		{"no room for fence grace", "timing:\n  ttl: 2s\n  renew_deadline: 2s\n", 3, []string{"must be shorter than timing.ttl"}},
		{"fence grace beyond ttl", "timing:\n  ttl: 2s\n  fence_grace: 1s\n", 3, []string{"must stay below timing.ttl"}},
		{"ttl too short", "timing:\n  ttl: 500ms\n", 2, []string{"timing.ttl (500ms) is too short", "at least 1s"}},

		// Names.
		{"invalid name", "workers:\n  - name: a b\n    command: [x]\n", 2, []string{`workers[0]: invalid worker name "a b": ' ' (space) is not allowed (use letters, digits, '-', '_' and '.')`}},
		{"invalid job name", "jobs:\n  - name: rep/ort\n    schedule: '@hourly'\n    command: [x]\n", 2, []string{`jobs[0]: invalid job name "rep/ort": '/' is not allowed`}},
		{"wildcard name", "workers:\n  - name: 'w*'\n    command: [x]\n", 2, []string{`'*' (a NATS wildcard) is not allowed`}},
		{"name too long", "workers:\n  - name: " + strings.Repeat("a", 129) + "\n    command: [x]\n", 2, []string{"is 129 characters long, the limit is 128"}},
		{"missing name", "workers:\n  - command: [x]\n", 2, []string{"workers[0]: name is missing", "add name:"}},
		{"invalid node name", "node:\n  name: 'my node'\n", 2, []string{`invalid node.name "my node": ' ' (space)`}},
		{"duplicate worker names", okWorker + "  - name: w\n    command: [y]\n", 5, []string{`workers[1] "w": name "w" is already used by workers[0] (line 3)`, "unique across workers and jobs"}},
		{"worker and job share a name", okWorker + "jobs:\n  - name: w\n    schedule: '@hourly'\n    command: [x]\n", 6, []string{`jobs[0] "w": name "w" is already used by workers[0] (line 3)`}},

		// Commands.
		{"missing command", okWorker + "  - name: x\n    dir: /tmp\n", 5, []string{`workers[1] "x": command is missing — add command: ["/path/to/program", "arg"]`}},
		{"empty command string", "workers:\n  - name: w\n    command: ''\n", 3, []string{`workers[0] "w": command is missing`}},
		{"empty program", "workers:\n  - name: w\n    command: ['', a]\n", 3, []string{"empty program name"}},
		{"job without command", "jobs:\n  - name: j\n    schedule: '@hourly'\n", 2, []string{`jobs[0] "j": command is missing`}},
		{"reserved env", okWorker + "    env: {COORD_TOKEN: x}\n", 5, []string{`workers[0] "w": env COORD_TOKEN is set by the coordinator`}},

		// Enums and signals.
		{"bad restart", okWorker + "    restart: sometimes\n", 5, []string{`workers[0] "w": invalid restart "sometimes" — use always, on-failure or never`}},
		{"bad overlap", "jobs:\n  - name: j\n    schedule: '@hourly'\n    command: [x]\n    overlap: queue\n", 5, []string{`invalid overlap "queue" — use skip, allow or replace`}},
		{"bad catch_up", "jobs:\n  - name: j\n    schedule: '@hourly'\n    command: [x]\n    catch_up: some\n", 5, []string{`invalid catch_up "some" — use none, last or all`}},
		{"negative catch_up_limit", "jobs:\n  - name: j\n    schedule: '@hourly'\n    command: [x]\n    catch_up_limit: -1\n", 5, []string{"catch_up_limit is -1"}},
		{"bad log level", "log:\n  level: verbose\n", 2, []string{`invalid log.level "verbose" — use debug, info, warn or error`}},
		{"bad log format", "log:\n  format: xml\n", 2, []string{`invalid log.format "xml" — use auto, text or json`}},
		{"bad signal", okWorker + "    stop_signal: TERMINATE\n", 5, []string{`workers[0] "w": stop_signal: unknown signal "TERMINATE"`, "SIGTERM"}},
		{"bad signal number", okWorker + "    stop_signal: 999\n", 5, []string{`unknown signal "999"`}},

		// Schedules and time zones.
		{"bad cron", "jobs:\n  - name: report\n    schedule: '61 * * * *'\n    command: [x]\n", 3, []string{`jobs[0] "report": invalid schedule "61 * * * *": minute field "61": end of range (61) above maximum (59)`, "https://pkg.go.dev/github.com/robfig/cron/v3"}},
		{"bad cron seconds", "jobs:\n  - name: j\n    schedule: '0 0 25 * * *'\n    command: [x]\n", 3, []string{`hour field "25"`}},
		{"cron field count", "jobs:\n  - name: j\n    schedule: '* * *'\n    command: [x]\n", 3, []string{"expected 5 to 6 fields, found 3"}},
		{"bad descriptor", "jobs:\n  - name: j\n    schedule: '@reboot'\n    command: [x]\n", 3, []string{"unrecognized descriptor"}},
		{"missing schedule", "jobs:\n  - name: j\n    command: [x]\n", 2, []string{`jobs[0] "j": schedule is missing`}},
		{"time zone in schedule", "jobs:\n  - name: j\n    schedule: 'CRON_TZ=Europe/Berlin 0 * * * *'\n    command: [x]\n", 3, []string{"sets a time zone", `timezone: Europe/Berlin and schedule: "0 * * * *"`}},
		{"time zone without space", "jobs:\n  - name: j\n    schedule: 'TZ=UTC'\n    command: [x]\n", 3, []string{"sets a time zone"}},
		{"unknown time zone", "jobs:\n  - name: j\n    schedule: '@hourly'\n    timezone: Mars/Olympus\n    command: [x]\n", 4, []string{`jobs[0] "j": unknown timezone "Mars/Olympus"`, "IANA"}},
		{"local time zone", "jobs:\n  - name: j\n    schedule: '@hourly'\n    timezone: Local\n    command: [x]\n", 4, []string{"timezone Local", "differ between nodes"}},

		// Addresses, cluster and NATS.
		{"listen without port", "node:\n  listen: localhost\n", 2, []string{`invalid node.listen "localhost": missing port in address`, "host:port"}},
		{"http bad port", "node:\n  http: 'localhost:http'\n", 2, []string{`invalid node.http`, "not a number"}},
		{"peer with scheme", "cluster:\n  listen: :6222\n  peers: ['nats://a:6222']\n", 3, []string{`invalid cluster.peers[0] "nats://a:6222"`, "no scheme"}},
		{"peers without listen", "cluster:\n  peers: [a:6222]\n", 2, []string{"cluster.peers is set but cluster.listen is empty"}},
		{"bad discover", "cluster:\n  listen: :6222\n  discover: coordinator\n", 3, []string{`invalid cluster.discover "coordinator": must start with "dns:"`}},
		{"bad discover port", "cluster:\n  listen: :6222\n  discover: dns:svc:x\n", 3, []string{`port "x"`}},
		{"negative size", "cluster:\n  listen: :6222\n  size: -3\n", 3, []string{"cluster.size is -3"}},
		{"external mode with cluster", "nats:\n  url: nats://n:4222\ncluster:\n  listen: :6222\n", 3, []string{"nats.url selects external mode"}},
		{"bad nats url", "nats:\n  url: 'http://n:4222'\n", 2, []string{`scheme "http" is not one of nats, tls, ws, wss`}},
		{"two auth methods", "nats:\n  url: nats://n\n  creds: doc.go\n  token: t\n", 4, []string{"nats.creds, nats.token are all set", "only one way"}},
		{"password without user", "nats:\n  url: nats://n\n  password: p\n", 3, []string{"nats.password is set without nats.user"}},
		{"cert without key", "nats:\n  url: nats://n\n  tls:\n    cert: doc.go\n", 3, []string{"nats.tls needs both cert and key"}},
		{"bad namespace", "namespace: my.ns\n", 1, []string{`invalid namespace "my.ns": '.' is not allowed`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ps := problemsOf(t, c.yaml, nil)
			p, ok := findProblem(ps, c.line, c.words...)
			if !ok {
				t.Fatalf("want a problem at line %d with %q; got:%s", c.line, c.words, dump(ps))
			}
			if p.File != "t.yaml" {
				t.Errorf("File = %q, want t.yaml", p.File)
			}
			if !strings.Contains(p.Msg, " — ") && !strings.Contains(p.Msg, "(use ") && !strings.Contains(p.Msg, "the limit is") {
				t.Errorf("message does not say how to fix it: %q", p.Msg)
			}
			if len(ps) != 1 {
				t.Errorf("want exactly one problem, got:%s", dump(ps))
			}
		})
	}
}

// One file with many problems lists them all, in file order.
func TestProblemsAllAtOnce(t *testing.T) {
	yaml := `node:
  weight: heavy
timing:
  ttl: 15 parsecs
workers:
  - name: billing
    command: [/bin/true]
    colour: blue
  - name: billing
  - name: "a b"
    command: x
    restart: sometimes
jobs:
  - name: report
    schedule: "61 * * * *"
    timezone: Mars/Olympus
    command: [x]
`
	ps := problemsOf(t, yaml, map[string]string{"COORD_WEIGHT": "x"})
	want := []struct {
		line int
		word string
	}{
		{0, "environment COORD_WEIGHT"},
		{2, "node.weight: expected a whole number"},
		{4, `invalid duration "15 parsecs"`},
		{8, `unknown key "colour"`},
		{9, `name "billing" is already used by workers[0] (line 6)`},
		{9, "command is missing"},
		{10, "invalid worker name"},
		{12, `invalid restart "sometimes"`},
		{15, "invalid schedule"},
		{16, "unknown timezone"},
	}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems, want %d:%s", len(ps), len(want), dump(ps))
	}
	for i, w := range want {
		if ps[i].Line != w.line || !strings.Contains(ps[i].Msg, w.word) {
			t.Errorf("problem %d = %q, want line %d with %q", i, ps[i], w.line, w.word)
		}
	}
	_, err := parse("t.yaml", []byte(yaml), envOf(nil))
	if got := strings.Count(err.Error(), "\n") + 1; got != len(want)-1 {
		t.Errorf("Error() has %d lines, want one per problem:\n%v", got, err)
	}
}

// A problem with a value from the environment says so instead of pointing into the file.
func TestProblemFromEnvironment(t *testing.T) {
	ps := problemsOf(t, "namespace: x\n", map[string]string{"COORD_LISTEN": "nope", "COORD_TTL": "15 parsecs"})
	if len(ps) != 2 {
		t.Fatalf("got:%s", dump(ps))
	}
	for i, want := range []string{
		`environment COORD_TTL: invalid duration "15 parsecs"`,
		`environment COORD_LISTEN: invalid node.listen "nope"`,
	} {
		if ps[i].Line != 0 || ps[i].File != "" || !strings.HasPrefix(ps[i].Msg, want) {
			t.Errorf("problem %d = %+v, want %q without file and line", i, ps[i], want)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	e := &Error{Problems: []Problem{
		{File: "a.yaml", Line: 3, Msg: "one"},
		{File: "a.yaml", Msg: "two"},
		{Line: 4, Msg: "three"},
		{Msg: "four"},
	}}
	want := "a.yaml:3: one\na.yaml: two\nline 4: three\nfour"
	if got := e.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// Top-level x- keys hold anchors; a problem in an anchored value is reported once.
func TestAnchors(t *testing.T) {
	f := mustParse(t, `
x-defaults: &defaults
  restart: on-failure
  stop_grace: 3s
workers:
  - <<: *defaults
    name: a
    command: [x]
  - {<<: *defaults, name: b, command: [y], stop_grace: 1s}
`, nil)
	if f.Workers[0].Restart != RestartOnFailure || f.Workers[0].StopGrace.String() != "3s" || f.Workers[1].StopGrace.String() != "1s" {
		t.Errorf("workers = %+v", f.Workers)
	}

	ps := problemsOf(t, `
workers:
  - name: a
    command: [x]
    stop_grace: &g 3x
  - name: b
    command: [x]
    stop_grace: *g
`, nil)
	if len(ps) != 1 || ps[0].Line != 5 || !strings.Contains(ps[0].Msg, `invalid duration "3x"`) {
		t.Errorf("got:%s", dump(ps))
	}
}

// check and run must agree: a schedule the scheduler refuses is refused here too.
func TestScheduleRulesOfTheScheduler(t *testing.T) {
	_, err := Parse("t.yaml", []byte("jobs:\n  - name: j\n    schedule: '@every 1500ms'\n    command: [x]\n"))
	if err == nil || !strings.Contains(err.Error(), "whole seconds") {
		t.Fatalf("@every 1500ms: %v, want the scheduler's whole-seconds rule", err)
	}
}
