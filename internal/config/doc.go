// Package config reads the coordinator daemon's configuration file: node and cluster
// settings, lease timing, supervised workers and cron jobs, in YAML.
//
// # Precedence
//
// From lowest to highest:
//
//  1. the defaults: Default, DefaultWorker, DefaultJob, and Timing.Resolve for the timings
//     derived from the TTL;
//  2. COORD_* environment variables (ApplyEnv);
//  3. the file (Load, Parse);
//  4. command-line flags, which the caller sets on the File that Load returns before it
//     calls Validate again.
//
// A zero or empty value in the file ("", 0, an empty list) counts as not set: it overrides
// neither the environment nor the default. So one shared file can say peers: [] and still
// let COORD_PEERS fill the peers in per deployment; to switch off something the
// environment switched on, unset the variable. For the same reason 0 means "default"
// everywhere (stop_grace: 0 is 10s; to kill at once use stop_signal: SIGKILL).
//
// # Environment
//
// COORD_NAME, COORD_DATA, COORD_LISTEN, COORD_HTTP, COORD_WEIGHT (node.*);
// COORD_CLUSTER_LISTEN, COORD_PEERS (comma separated), COORD_DISCOVER, COORD_CLUSTER_SIZE
// (cluster.*); COORD_NATS_URL, COORD_NATS_CREDS, COORD_NATS_NKEY, COORD_NATS_USER,
// COORD_NATS_PASSWORD, COORD_NATS_TOKEN (nats.*); COORD_NAMESPACE; COORD_TTL
// (timing.ttl); COORD_LOG_LEVEL, COORD_LOG_FORMAT (log.*). An empty variable is unset.
//
// # Problems
//
// Load, Parse, ApplyEnv and Validate report every problem at once, as an *Error (which
// matches ErrInvalid) holding one Problem per line, each saying where, what and how to fix
// it:
//
//	coordinator.yaml:7: unknown key "stop-grace" in workers[0] "billing" — did you mean stop_grace? (valid keys: …)
//	coordinator.yaml:12: workers[1] "mailer": command is missing — add command: ["/path/to/program", "arg"]
//	coordinator.yaml:20: jobs[0] "report": invalid schedule "61 * * * *": minute field "61": end of range (61) above maximum (59) — see https://pkg.go.dev/github.com/robfig/cron/v3
//
// A problem with a value taken from the environment is reported as
// "environment COORD_TTL: …" instead.
//
// Unknown keys are errors, not warnings: a misspelt key would otherwise silently leave the
// default in place. Top-level keys starting with "x-" are the exception, as in Compose
// files, so that they can hold YAML anchors:
//
//	x-defaults: &defaults {restart: on-failure, stop_grace: 30s}
//	workers:
//	  - {<<: *defaults, name: billing, command: [/usr/bin/billing]}
package config
