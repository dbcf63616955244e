// Package supervise runs OS commands as exactly-once workers: each command runs in its own
// process group under a watchdog that stops it when the ownership lease runs out, even if
// the coordinator that owns the lease is paused, deadlocked or dead. It knows nothing of
// NATS; it takes the lease facts through the small Lease interface.
//
// # The pause problem
//
// A coordinator that is SIGSTOPped, swapped out or stuck cannot renew its lease. After one
// TTL another node takes the worker over and starts the command there. If the first
// command were a plain child of the stuck coordinator, it would keep running: two copies.
// The coordinator cannot stop it, because the coordinator is the thing that is stuck.
//
// # The watchdog
//
// So every command runs under a small shim process, the watchdog: the coordinator binary
// itself, re-executed through /proc/self/exe with the argument "__supervise-watchdog"
// (main calls MaybeRunWatchdog first thing to dispatch it). Per command:
//
//	coordinator ──control pipe (fd 3)──▶ watchdog ──fork/exec──▶ command (own process group)
//	            ◀──status pipe (fd 4)───           stdout/stderr pipes go straight to Run
//
// Run sends the command line and the first deadline, and only then does the watchdog
// start the command: it never runs without a deadline. While the command runs, Run
// forwards every new lease deadline. The watchdog keeps the largest deadline it received,
// never extends it by itself — unless the lease was lost: then Run sends a "fence" with an
// earlier deadline (the moment of the loss), which the watchdog takes, and it ignores every
// deadline after that — and when its clock passes the deadline it sends StopSignal
// to the command's process group, SIGKILL FenceGrace after the deadline, and reports
// "fenced"; Run then returns ErrFenced. A planned stop (Run's context ends) is a "stop"
// message: StopSignal now, SIGKILL after StopGrace, with the deadline still enforced.
//
// # Why absolute CLOCK_MONOTONIC deadlines
//
// A deadline travels as an absolute CLOCK_MONOTONIC reading, a clock both processes share
// on one host, that no one can set, and that Go's own timers run on. A relative "n seconds
// left" would grow stale while a message waits in the pipe or either side is paused; an
// absolute wall-clock time would move with NTP steps. The coordinator reads the clock
// first and the remaining lease time second, so a pause between the two reads makes the
// deadline earlier, never later.
//
// # Guarantees (Linux)
//
//   - The command starts only if its deadline is still ahead.
//   - Lease lost: StopSignal to the group at the deadline, SIGKILL at deadline +
//     FenceGrace, whatever state the coordinator is in, also during a planned stop with a
//     longer StopGrace.
//   - Coordinator dead (any way, SIGKILL included): the control pipe reaches EOF, and the
//     watchdog's Pdeathsig (SIGHUP, from a thread Run keeps alive for that purpose) backs
//     it up. The watchdog stops the group at once, with SIGKILL at most FenceGrace later,
//     and exits. Pdeathsig is not SIGKILL on purpose: the watchdog must live to stop the
//     whole group, not only its direct child.
//   - The command's end is the worker's end: when it exits, what is left of its process
//     group gets StopSignal and, after StopGrace, SIGKILL. The watchdog is a child
//     subreaper, so descendants that left the group (setsid) become its children once
//     their parents die; it kills them when it kills the group, and reports only after
//     every descendant is gone (or after 5 s of SIGKILL not working).
//   - The watchdog and the command each run in their own process group, so a signal to
//     the coordinator's group (^Z, kill -STOP -PGID) freezes neither. The watchdog
//     ignores SIGTERM and SIGINT: a service manager sends them to every process of the
//     service, and the coordinator then stops its workers with their StopGrace.
//   - If the command dies because the watchdog died (Pdeathsig SIGKILL), Run kills the
//     rest of the group as a best effort and returns ErrWatchdog.
//
// Costs: per running command, one watchdog process (a few MB of RSS, mostly the shared
// binary) and one parked OS thread in the coordinator, which keeps the watchdog's
// Pdeathsig tied to a thread that lives as long as the command.
//
// Limits: the watchdog itself can be paused (SIGSTOP sent to its pid) or killed, and a
// process in uninterruptible sleep survives SIGKILL. CLOCK_MONOTONIC stops while the host
// is suspended; a suspended host's commands may run on after resume until the watchdog's
// timer fires, while other nodes took over during the suspension.
package supervise
