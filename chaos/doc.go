// Command chaos runs three real coordinator nodes on loopback, injects a seeded schedule
// of faults and checks that no worker ever ran twice — on one node or across nodes — that
// fencing tokens only grew, that no cron tick ran twice and that every worker runs at the
// end.
//
//	make chaos                                     # 3 minutes, a seed from the clock
//	make chaos-short                               # 60 s of faults, as in CI
//	make chaos CHAOS_FLAGS='-seed 42 -duration 10m'
//	make chaos CHAOS_FLAGS='-kinds kv-del,reload'  # only these kinds
//	make chaos-short CHAOS_SHORT_OPS=false         # without the operator faults
//
// Flags: -bin (the coordinator to test), -duration, -seed, -workers (20), -jobs (3),
// -ttl (2s), -ops (true), -kinds, -log-level, -keep, -v.
//
// # Cluster
//
// The nodes run under internal/cluster (New, StartAll, Close) with -workers supervised
// recorder commands (internal/cluster/recorder), which log their runs with
// CLOCK_MONOTONIC stamps and take a lock per worker. A copy that finds the lock held
// writes an OVERLAP line and runs on (RECORDER_ON_OVERLAP=run), as a real second copy
// would, so the stamps show how long two copies ran together and where. -jobs per-second
// cron jobs (retry_lost off) append "$COORD_JOB $COORD_TICK $COORD_NODE" to ticks.log,
// from which duplicate and missed ticks are counted.
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
// The seed fixes the sequence of faults: rounds of every kind in shuffled order, each with
// a node, a hold time, a quiet time before it and, for operator faults, the workers it
// acts on. Process and network faults: SIGKILL and restart, SIGSTOP for 1.5–4 TTLs then
// SIGCONT, graceful restart (SIGTERM, then start), SIGKILL of the node leading the
// workers' KV stream, and a partition of one node for 2–6 TTLs.
//
// Operator faults (-ops, on by default): reload (the config file changes the environment
// of 1–3 workers, then SIGHUP to every node); slow-stop (`coordinator release` of a worker
// whose command traps SIGTERM and stops only 2.5 TTLs later, past the config's
// shutdown_grace of 1.5 TTLs — every fifth worker from w02 on is such a worker, and every
// planned stop of one outlives shutdown_grace); kv-del and kv-purge (`nats kv del` and
// `nats kv purge` of 1–3 live claims, through a node's client port); expiry-marker (the
// message nats-server writes when a per-message TTL expires — no data, headers
// Nats-Marker-Reason: MaxAge, Nats-TTL and Nats-Rollup: sub — published early on 1–3 live
// claims, as a stream leader whose clock runs ahead would); bucket-delete (the workers
// bucket is deleted; if the nodes have not made it again within 3 TTLs + 5 s, that is a
// problem and the suite restarts the nodes one by one until the cluster recovers, as an
// operator would); release-burst (`coordinator release` of 3–6 workers at once); drain
// (`coordinator drain NODE`, `drain --undo` 1–3 TTLs later).
//
// One node at most is faulty at a time; after each fault the suite waits (bounded) until
// every node is ready and the workers stream has a leader with current replicas. How many
// faults fit in -duration depends on the machine; the sequence does not (a fault that
// might not finish before the end is skipped, the next one tried).
//
// # Checks
//
// At the end the suite waits (bounded) until every worker runs where its claim says, stops
// every process, and prints: per worker its runs, the longest time it ran nowhere and the
// fault that explains it; per cron job the ticks run, missed (allowed: catch_up none) and
// the longest stretch missed; per fault how many workers it interrupted, how many overlaps
// began after it and what it did; the fault counts per kind; and the checks, each of which
// must be zero: overlapping runs on one node and across nodes (with the longest and total
// time together), copies that found the lock held, fencing tokens that did not increase,
// cron ticks run twice, workers not running at the end, faults that failed or that the
// cluster did not recover from, processes left behind. Any of them makes the exit status
// 1. (An operator fault whose every command was refused — a release racing a move — did
// nothing: it counts as failed in the tables, not as a problem.) The seed and the command that replays the run are printed first and last. Ctrl-C
// stops everything and exits 130.
package main
