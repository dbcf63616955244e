// Command chaos runs three real coordinator nodes on loopback, injects a seeded schedule
// of faults and checks that no worker ever ran twice, that fencing tokens only grew, that
// no cron tick ran twice and that every worker runs at the end.
//
//	make chaos                                     # 3 minutes, a seed from the clock
//	make chaos-short                               # 60 s, as in CI
//	make chaos CHAOS_FLAGS='-seed 42 -duration 10m'
//
// Flags: -bin (the coordinator to test), -duration, -seed, -workers (20), -jobs (3),
// -ttl (2s), -log-level, -keep, -v.
//
// # Cluster
//
// The nodes run under internal/cluster (New, StartAll, Close) with -workers supervised
// recorder commands (internal/cluster/recorder), which log their runs with
// CLOCK_MONOTONIC stamps and take a lock per worker, so that an overlap is seen both from
// the stamps and from the kernel. -jobs per-second cron jobs append "$COORD_JOB
// $COORD_TICK $COORD_NODE" to ticks.log, from which duplicate and missed ticks are counted.
//
// Every route between the embedded servers goes through a proxy in this process (see
// routeNet), so that a node can be cut off from the others while it keeps running. The
// proxies listen on 127.77.0.1–3 (loopback); the harness's TCP proxy cannot bind those,
// and the harness gives all nodes the same --peers, so each node is started through this
// binary acting as the coordinator: it points --peers at the proxies and execs the real
// one. After start and after every recovery the suite checks in /proc/net/tcp that no
// route bypasses the proxies. Where the 127.77.0.x addresses cannot be bound, partitions
// are skipped with a notice and the other faults run on direct routes.
//
// # Faults
//
// The seed fixes the sequence of faults: rounds of the five kinds in shuffled order —
// SIGKILL and restart, SIGSTOP for 1.5–4 TTLs then SIGCONT, graceful restart (SIGTERM,
// then start), SIGKILL of the node leading the workers' KV stream, and a partition of one
// node for 2–6 TTLs — each with a node, a hold time and a quiet time before it. One node
// at most is faulty at a time; after each fault the suite waits (bounded) until every node
// is ready and the workers stream has a leader with current replicas. How many faults fit
// in -duration depends on the machine; the sequence does not.
//
// # Checks
//
// At the end the suite waits (bounded) until every worker runs where its claim says, stops
// every process, and prints: per worker its runs, the longest time it ran nowhere and the
// fault that explains it; per cron job the ticks run, missed (allowed: catch_up none) and
// the longest stretch missed; per fault how many workers it interrupted and for how long;
// and the checks, each of which must be zero: overlapping runs, copies refused by the lock,
// fencing tokens that did not increase, cron ticks run twice, workers not running at the
// end, faults the cluster did not recover from, processes left behind. Any of them makes
// the exit status 1. The seed and the command that replays the run are printed first and
// last. Ctrl-C stops everything and exits 130.
package main
