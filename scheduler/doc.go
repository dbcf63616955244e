// Package scheduler is cluster-wide cron on the coordination store: every node adds the same
// jobs, and each tick of a job's schedule runs once in the cluster — also when nodes die,
// are cut off or restart — with explicit policies for overlapping runs and missed ticks.
//
//	s, _ := scheduler.New(store, "node-a")
//	_ = s.Add("report", "0 3 * * *", report, scheduler.WithTimeZone("Europe/Berlin"))
//	_ = s.Start(ctx)
//	defer s.Close()
//
// # Schedules
//
// Specs are robfig/cron/v3 syntax — five fields, an optional leading seconds field, or a
// descriptor (@hourly, @every 10m) — read in the job's time zone (WithTimeZone, default
// UTC; the machine's zone is refused, since nodes must compute the same ticks). Daylight
// saving time follows robfig/cron: a wall time that does not exist is skipped (a daily
// 02:30 job does not run on 2026-03-29 in Europe/Berlin), a wall time that happens twice
// runs twice (02:30 CEST and 02:30 CET on 2026-10-25). "@every d" counts from the Unix
// epoch, not from process start. See Schedule.
//
// # What is stored
//
// In the jobs bucket (<ns>_jobs; retention kv.Options.JobRetention, default 7 days), for
// job J:
//
//	J.<unix>          tick claim and run record (Run, JSON) of the tick at that second;
//	                  once the tick is finished, a per-entry TTL: the run history,
//	                  HistoryTicks periods of the schedule, at least MinHistory (1h), at
//	                  most the bucket's retention; a per-second job keeps ~3,600 keys
//	J.<unix>-manual   the same for a run started with Trigger
//	J.<tick>.run      run lease: who runs the tick now; per-entry TTL (WithTiming,
//	                  default 15s), renewed every RenewInterval by the running node with
//	                  a lease.Lease — the same primitive and timing rule as worker claims
//	J.last            copy of the record of the latest tick (any state), with "revision"
//	J.catchup         catch-up lock, per-entry TTL; deleted when the pass ends
//
// Records change only by compare-and-set. A record's "token" is the revision of the write
// that claimed the attempt (0 in the claiming create itself, meaning "this entry's
// revision", as in claims of the workers bucket).
//
// # Claiming a tick
//
// Every node computes the same ticks. At tick time the node that the Placement prefers
// (default: every node) claims the tick; the others wait the takeover delay
// (WithTakeoverDelay, default 2s) and then claim it if nobody did — a read of the record
// first, so a claimed tick costs them one read. Claiming is, in this order:
//
//  1. create the run lease J.<tick>.run ("running"); a node that finds it taken looks
//     again shortly (its holder is claiming, or has claimed, the tick);
//  2. create the record J.<tick> ("running", with the start time): this compare-and-set is
//     the claim — exactly one node wins it; a lease holder that loses it releases its
//     lease. Under overlap policy Replace the record is "claimed" first and becomes
//     "running" once the runs it replaces have stopped;
//  3. publish job.fired, call the function; then record succeeded or failed, publish,
//     update J.last and release the lease (state "done", one-second TTL).
//
// A tick whose run ends within the renew interval thus costs the jobs stream six messages:
// the lease's create, release and expiry marker, the record's create and final write, and
// J.last (written at the revision this node wrote last, without reading it first). Longer
// runs add one lease renewal per renew interval.
//
// A tick skipped under overlap policy Skip gets its final record at once, without a
// lease. Because the lease is created before the record and released after the final
// record, a record that is still claimed or running while its lease is gone belongs to a
// dead run.
// A write whose reply was lost is recognised by the random claim id in the record.
//
// # Timing model
//
//   - The preferred node claims at the tick (a few milliseconds after it, in the tests).
//   - The others claim at tick + takeover delay when the preferred node did not.
//   - A claim may happen until tick + miss-after (WithMissAfter, default 10s, long enough to
//     ride out a stream leader election), retried while the store does not answer; while
//     another node holds the tick's lease but has not written its record, up to a lease
//     TTL longer.
//   - A tick that no node claimed in that window is missed: the whole cluster was down or
//     cut off from NATS. Missed ticks are found by a catch-up pass when a job starts on a
//     node, and when a node that gave up a tick for lack of NATS reaches it again.
//   - After a restart, ticks less than miss-after old still run, late (reason "late").
//
// Nodes fire by their own wall clocks; a node whose clock is off claims early or late, but
// the tick still runs once. Every node reads time zones from the IANA database embedded in
// the binary, never the machine's, so all compute the same ticks. Lease timing never
// compares clocks of different machines, and no node trusts the server's: a run lease that
// disappears without its holder releasing it — an expiry marker (the stream leader's clock
// may run ahead), a delete or purge by hand — counts as a running run until this node's
// own monotonic clock says a lease TTL has passed since the last revision of it seen here.
// Only then does the sweeper record the run lost (and retry it), and only then do Skip and
// Replace stop counting it.
//
// # What "exactly once" means here
//
// Each tick key is claimed once: one node's compare-and-set wins, on every path (on time,
// takeover, late, catch-up, Trigger), and the function is called at most once per tick and
// attempt. Its limits:
//
//   - A run can be lost: its node dies, is cut off or shuts down mid-run. Its context ends
//     (ErrLeaseExpired at the renew deadline, TTL*4/5 after the last good renewal; ErrClosed
//     on Close; ErrRemoved on Remove), and the tick is recorded lost — by the node itself,
//     or, when its lease has run out, by any other node (on the lease's expiry marker,
//     compare-and-set from "running" to "lost", event job.failed with reason "lost: …").
//     Without WithRetryLost that is the end: at most once. With it, another node claims the
//     tick again (a new compare-and-set on the same key: lease first, then the record from
//     "lost" to "claimed" with Attempt+1 and a new Token), up to MaxAttempts: at least once,
//     never two attempts at the same time as long as functions honour their context within
//     FenceGrace. A lost run may have done part of its work, or all of it without being able
//     to record it: with WithRetryLost such a tick runs again (at-least-once; it stays
//     opt-in).
//   - A run whose node cannot record its end is recorded lost by the others.
//   - After the run history a finished tick's record is gone; only catch-up looks back, and
//     no further than nine tenths of the history (records expire by the server's clock).
//
// # Overlap
//
// Skip (the default) records a tick as skipped (event job.skipped) when any run of the job
// holds a live "running" lease, on any node — including a run whose node is cut off, until
// its lease runs out. Allow runs regardless. Replace writes a stop request into every other
// running lease of the job (compare-and-set, keeping its TTL: the "stop" field names the new
// tick and token); the node holding it sees the change through its watch of the job's
// leases, or at its next renewal, and cancels the run with ErrReplaced (recorded failed,
// reason "replaced by …"). The new run stays "claimed" until each old run is known to have
// stopped: its node released its lease after the function returned, or the lease went away
// and a lease TTL has passed on this node's clock since its last revision seen here. An old
// run that takes long to stop while its node keeps renewing is waited for; the two never
// overlap. Every run start goes through the policy: scheduled, late, catch-up, retried and
// manual ones.
//
// # Missed ticks
//
// A catch-up pass runs under the lock J.catchup, one node at a time. It walks the ticks
// after an anchor (J.last as read when the job started, or the last tick this node
// handled before it lost NATS) up to miss-after before now — at most the 1000 most recent.
// Ticks with a record are left alone; the others get, per WithCatchUp: None (default)
// records them missed (event job.missed); Last runs the most recent once and records the
// others missed; All runs the most recent ones up to the limit, oldest first and one after
// the other, and records the older ones missed. "Most recent" counts only ticks without a
// record: one that a tick loop claimed late does not use up the policy. Catch-up runs claim the same keys, so they
// too run once. A job with no J.last (new) catches up nothing. J.last is rewritten when half
// the retention old, so that a monthly job keeps its anchor.
//
// # Events
//
// Through ownership.Publisher, kind "job", on <ns>.events.job.<name>.<type>: fired,
// succeeded, failed (also for lost runs: reason "lost: …"), skipped, missed. Token is the
// tick's token; Reason ends with the tick ("(tick 1767225600, 2026-01-01T00:00:00Z)").
package scheduler
