package ownership

// GiveUpReleases ends a Close under way early when the store cannot take writes — it lost
// its quorum, its peers are gone (a whole cluster stopping at once) — instead of retrying
// the releases for the whole ShutdownGrace. Every worker of the node is asked to stop at
// once (there are no renewals left to pace them for); once no worker function of the node
// runs any more, the releases still pending are given up and their claims left to expire
// after their TTL, which is safe: a claim left to expire is never taken over before it.
//
// It returns false and only asks the workers to stop while some worker still runs, or when
// Close has not begun: call it again. why, the cause, is logged once, when it gives up.
func (e *Engine) GiveUpReleases(why string) bool {
	if e.stopCtx.Err() != nil {
		return true
	}
	e.mu.Lock()
	closing := e.closing
	ws := make([]*worker, 0, len(e.workers))
	for _, w := range e.workers {
		ws = append(ws, w)
	}
	e.mu.Unlock()
	if !closing {
		return false
	}
	for _, w := range ws {
		w.requestStop()
	}
	if len(e.liveTerms()) > 0 {
		return false
	}
	owned := 0
	for _, w := range ws {
		if w.owning() {
			owned++
		}
	}
	e.log.Warn(storeLostMsg, "reason", why, "claims_left", owned, "ttl", e.cfg.TTL)
	e.stopCancel()
	return true
}

// storeLostMsg is GiveUpReleases' log line (the integration tests look for it).
const storeLostMsg = "shutdown: the store has no quorum (peers gone); workers stopped, claims left to expire"
