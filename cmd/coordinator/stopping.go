package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// storePollInterval is how often a stopping node checks whether the store still has its
// quorum.
const storePollInterval = 100 * time.Millisecond

// watchStoreWhileStopping runs while the engine closes: when the store has had no quorum
// for a RenewInterval, at most a second (the peers are gone: the whole cluster stops at
// once), it makes
// the engine stop its workers and give up the releases, which cannot land, instead of
// retrying them for the whole ShutdownGrace, and closes the node's connection so that the
// rest of the stop does not wait for the store either. The returned func ends the watch and waits.
func (d *daemon) watchStoreWhileStopping() func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// A renew interval, at most a second: peers that went away stay away during a stop.
		need := min(d.engine.Config().RenewInterval, time.Second)
		t := time.NewTicker(storePollInterval)
		defer t.Stop()
		var lostSince time.Time
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			lost, why := d.storeLost()
			switch {
			case !lost:
				lostSince = time.Time{}
			case lostSince.IsZero():
				lostSince = time.Now()
				d.log.Debug("shutdown: the store has no quorum", "reason", why)
			case time.Since(lostSince) >= need:
				if d.engine.GiveUpReleases(why) {
					// What is left of the engine's stop (stopping its watches, which
					// delete their consumers; leaving the nodes bucket) would wait for
					// the store's answers in vain, each for its own timeout.
					d.nc.Close()
					return
				}
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// storeLost reports whether the store cannot take writes now, and why. Embedded: too few
// of the cluster's servers are connected for a majority. External: the workers stream
// has no leader, or JetStream does not answer.
func (d *daemon) storeLost() (bool, string) {
	if d.srv != nil {
		p := d.srv.Peers()
		if p.Quorum() {
			return false, ""
		}
		return true, fmt.Sprintf("%s; a write needs %d", p, p.Expected/2+1)
	}
	if d.store == nil {
		return false, ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	info, err := d.store.JetStream().Stream(ctx, "KV_"+d.cfg.Namespace+"_workers")
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, "" // not a quorum matter: the release says what is wrong
	}
	if err != nil {
		return true, "JetStream did not answer: " + err.Error()
	}
	ci := info.CachedInfo()
	if ci.Cluster != nil && ci.Cluster.Leader == "" {
		return true, "the workers stream has no leader"
	}
	return false, ""
}
