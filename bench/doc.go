// Command bench measures the coordinator on this machine and prints one line per figure,
// "name value unit" ("name n/a" when a figure cannot be measured), writes the same figures
// with their raw samples to results.json, and draws PNG plots, all into -out:
//
//	make bench                      # go run ./bench -bin bin/coordinator -out bench
//	go run ./bench -only ttl2 -v    # one phase, with the harness's log lines
//
// After the figures it prints, as comment lines (#), ours next to the figures users
// compare with: the etcd v3.7.3 election recipe measured on the same kind of machine.
// Progress goes to stderr. The whole run takes about twenty-five minutes (the stop phase three
// to five of them, the scale phase about eight, release two, rolling three).
//
// # Figures
//
// Seven phases, each with real coordinator processes started by internal/cluster:
//
// single — one daemon with its embedded server, TTL 15s, no workers:
//   - rss_mb_daemon_idle: its resident memory once started.
//   - claims_per_s_1node_seq, claims_per_s_1node_c32: kv Workers.Create of distinct keys
//     (a claim record with the claim TTL, as a node claims a worker) one at a time and
//     from 32 goroutines, for -claims-time each, against the daemon's server.
//   - rss_mb_holder_idle, renew_cpu_pct_1000, renew_cpu_pct_10000, rss_mb_holder_10000:
//     a holder is its own small program, bench/holder (built at start into the work
//     directory, linking only the ownership library, kv and the NATS client, as an
//     application would), using the ownership library with N no-op Go workers at the
//     default timings (TTL 15s, renew every 3s) against the daemon; once it owns all N,
//     its CPU (utime+stime from /proc/<pid>/stat, percent of one core) is measured over
//     -cpu-window. renew_server_cpu_pct_N is the daemon's CPU over the same window and
//     renewals_per_s_N the renewals the holder counted.
//   - balance_max_over_min: three holders with the same 1,000 workers, started together;
//     when the claims have converged (all owned, no count changed for 15 s), the largest
//     count over the smallest, read from the store.
//
// A holder's stderr (the library's warnings) goes to a file in the work directory; when a
// holder stops — releasing its claims — the warnings it logged are counted by message,
// printed and kept in results.json: they are findings, not noise.
//
// ttl2 — three nodes at TTL 2s with six recorder workers and two per-second cron jobs:
//   - cron_fire_delay_ms_median, _p99: for 20 s, each tick's scheduled time (COORD_TICK)
//     against the wall clock read by the tick's command as it starts; "cron_fire_delay_ms
//     n/a" when no tick ran.
//   - claims_per_s_3node_seq, _c32: as above against the three servers (R3 buckets).
//   - handoff_ms_median, _p99 (-handoffs, 10): SIGTERM a node → a worker it ran starts on
//     another node. Times are the recorder's CLOCK_MONOTONIC start stamp minus a stamp
//     taken just before the signal.
//   - handoff_exit_ms_median, _p99: the same handoffs' first leg, SIGTERM → the old
//     command's stop stamp (written as it exits); handoff_move_ms_median, _p99: the second
//     leg, that stamp → the new command's exec (its watchdog's CLOCK_MONOTONIC reading just
//     before the fork and exec, COORD_EXEC_NS); handoff_setup_ms_median, _p99: the
//     command's own start-up after that, exec → the recorder's start stamp (the exec, the
//     Go runtime's start, opening its log, taking its lock), which handoff_ms includes, and
//     handoff_runtime_ms_median, _p99, its part up to the recorder's first own code.
//   - failover_kill_ms_ttl2s_median, _p99 (-kills2, 10): the same with SIGKILL.
//
// ttl5 — three nodes at TTL 5s: failover_kill_ms_ttl5s_median, _p99 (-kills5, 6).
//
// release — three nodes at TTL 2s (-release-ttl) with the recorder workers of ttl2 (see
// release.go); -releases (10) times `coordinator release W` of a worker W that a node drawn
// from a fixed-seed generator runs, each after the cluster settled:
//
//   - release_ms_median, _p99, _worst: from just before the command starts to W's start
//     on another node (recorder stamps); release_cli_ms samples the command's own run time.
//
//   - release_gap_ms_median, _worst: from the released run's stop line to that start, the
//     time W ran nowhere.
//
//   - release_returned_count: releases after which W started on the releasing node again
//     within 3 claim graces + a rebalance delay + 2 renewals (4 s at TTL 2s) of its start
//     elsewhere — a bounce; 0 once a released worker stays off the releasing node. The
//     times from its start elsewhere to its return are the release_returned_after_ms samples.
//
//   - release_unmoved_count: releases after which W did not start elsewhere within 30 s.
//
//     go run ./bench -bin bin/coordinator -only release -out /tmp/release   # about 2 minutes
//     go run ./bench -bin bin/coordinator -only release -release-ttl 15s -releases 3 -out /tmp/r15
//     # the default TTL: a claim grace of 6 s, a return window of 30 s; about 3 minutes
//
// rolling — a rolling restart of three holders that share the same 1,000 no-op workers
// (the ownership library at the default timings, TTL 15s, against one daemon; see
// rolling.go). Once the claims settled (all owned, no count changed for 15 s), each holder
// in turn gets SIGTERM (it hands its workers over), the other two settle, it starts again
// with the same node name, and all three settle:
//
//   - rolling_moves_per_leave_1000, rolling_moves_per_join_1000: medians over the three
//     restarts of the ownership terms the holders began from one settled state to the next,
//     i.e. workers stopped on one node and started on another (a worker that moves twice
//     counts twice). A leave moves the leaving holder's share, about 333; a join moves about
//     333 back without stickiness, fewer with it.
//
//   - rolling_net_moves_per_leave_1000, _join_1000: the workers whose owner in the store
//     differs between the two settled states.
//
//     go run ./bench -bin bin/coordinator -only rolling -out /tmp/rolling   # about 3 minutes
//
// stop — planned stops of many workers, against one daemon at TTL 15s (see stop.go):
//
//   - stop_s_10000: SIGTERM of a holder of 10,000 workers until it exited;
//     stop_leases_lost_10000: leases its engine lost on the way plus claims that expired or
//     were left in the store (0 when every claim is released).
//
//   - drain_s_3333, drain_leases_lost_3333 (skip with -drain=false): three holders share
//     10,000 workers, one is drained (SIGUSR1) until the others own them all.
//
//     go run ./bench -only stop -drain=false -out /tmp/stop   # the stop figure alone
//
// scale — many workers (issue 16), against one daemon at TTL 15s (see scale.go):
//
//   - register_s_10000: a holder starts its engine with no workers, then calls Register for
//     10,000 names; the time those calls took (this holder is the only member).
//
//   - renew_cpu_pct_10000, server_cpu_pct_10000, rss_mb_holder_10000: that holder once it
//     owns all 10,000: its CPU and the daemon's (the NATS server serving its leases) over
//     -cpu-window, percent of one core, and its RSS. In a run of every phase the single
//     phase leaves its 10,000-worker holder to this one; alone, single prints these names
//     too (renew_server_cpu_pct_N and renewals_per_s_N are printed by both).
//
//   - failover_all_s_10000: a holder owns 10,000 workers while two holders with the same
//     names wait drained; SIGKILL of the first and, at once, the end of the others' drain,
//     until the two own all 10,000. n/a (with the reason in results.json) after 4 minutes.
//
//   - renew_cpu_pct_100000, server_cpu_pct_100000, rss_mb_holder_100000: a holder of
//     100,000 workers, measured as above once it owns them all; n/a with the reason when it
//     does not own them within 5 minutes or its RSS passes 8 GB.
//
//     go run ./bench -bin bin/coordinator -only scale -out /tmp/scale   # about 8 minutes
//
// Each kill or handoff stops a node drawn from a fixed-seed generator, so that the node
// that leads the workers' KV stream is hit about as often as a random crash would hit it;
// a kill of that node also waits for JetStream to elect a new leader (seconds), which a
// lease alone does not. The kill figures are therefore also given split by that:
// failover_kill_ms_ttlNs_not_stream_leader_median and _stream_leader_median. After each
// sample the node is started again and the next one waits until every node is ready, the
// workers stream is current on all replicas and placement has settled.
//
// # Output
//
// results.json holds the figures, the raw samples (milliseconds), the references, notes
// (how many kills hit the stream leader, the balance counts) and the load average at start
// and end: other work on the machine skews the figures. Plots: failover_timeline.png (each
// kill, seconds to running elsewhere, leader kills as triangles, the etcd medians dashed),
// handoff.png, claim_latency.png and failover_latency.png (distributions as CDFs), and
// balance.png.
package main
