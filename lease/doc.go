// Package lease is the one lease primitive of the coordinator and its one timing rule.
//
// A Lease keeps one compare-and-set entry renewed on behalf of a holder: a renew loop every
// RenewInterval (a quarter of it after a failure), a deadline RenewDeadline after the send
// time of the last good renewal, and a fence — a timer armed at every renewal, independent
// of the loop, so that the lease ends on time even when a renewal call hangs or the loop is
// starved. The lease ends, once, when a renewal finds the entry gone (ErrLost), when the
// holder's own watch says so (Lose: the deadline is pulled in to now, so guarded work
// stops now), when the deadline passes (ErrExpired), or on Stop. Storage is the small
// Store interface, so the package knows nothing of NATS; time is an injected Clock.
//
// Timing is the rule for the five lease timings (TTL, RenewInterval, RenewDeadline,
// FenceGrace, ShutdownGrace): Derive fills what was left zero from TTL, Validate checks
// RenewInterval < RenewDeadline < RenewDeadline + FenceGrace < TTL and says which Rule
// broke. The daemon's config file, ownership.Config, the scheduler's run leases and the
// watchdog of supervised commands all take their timings from it.
//
// # Users
//
// The scheduler keeps every run lease (<job>.<tick>.run) and catch-up lock with a Lease;
// its Store re-reads the entry on a conflict to tell its own earlier write (or a stop
// request from a newer run) from another holder.
//
// The ownership engine is to keep each worker's term with a Lease the same way (the
// rewrite of ownership/worker.go for issue 12 does it): the term's claim Create gives Rev
// and Sent; Store.Renew is the claim Update at rev, returning landed when a conflict turns
// out to be this term's own earlier renewal (same incarnation and token); OnEnd cancels the
// worker's context; the engine's watcher calls Lose when it sees a newer revision that is
// not this term's; a planned stop keeps the Lease renewing (state "stopping", via Update)
// until the worker returned, then Stop and a delete at Rev. The ownership.Lease handed to
// workers keeps its own API and takes Deadline from the Lease.
//
// Takeover is not part of this package: a contender times TTL from the last revision it
// saw, on its own Clock, and never trusts an expiry marker or delete to say the holder is
// gone.
package lease
