package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jetcoord/coordinator/kv"
)

// stepDownTimeout bounds the whole hand-over of stream leaderships on a planned stop; an
// election after a step-down takes 0.1–0.3 s on loopback.
const stepDownTimeout = 2 * time.Second

// ledStreams are the namespace's streams, whose leader serves every node's writes.
func (d *daemon) ledStreams() []string {
	ns := d.cfg.Namespace
	out := []string{kv.EventsStream(ns), logsStream(ns)}
	for _, b := range []string{"workers", "nodes", "jobs", "state"} {
		out = append(out, "KV_"+ns+"_"+b)
	}
	return out
}

// stepDownStreams hands over the leadership of every stream of the namespace this node's
// embedded server leads, and waits until another server leads each, before the server
// stops. A leader that just goes away stalls everyone's writes until the others notice and
// elect a new one (seconds); a step-down with the routes still up stalls them for the
// election only, and the server's own step-down at shutdown races the closing routes.
// Only in a cluster with a quorum: alone, there is nobody to hand over to.
func (d *daemon) stepDownStreams() {
	if d.srv == nil || d.srv.ClusterSize() < 2 || d.nc == nil || d.store == nil || !d.srv.Peers().Quorum() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stepDownTimeout)
	defer cancel()
	js := d.store.JetStream()
	me := d.cfg.Node.Name
	var wg sync.WaitGroup
	for _, name := range d.ledStreams() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Short: a stream whose leader is gone (the others stop too) does not answer.
			actx, acancel := context.WithTimeout(ctx, 250*time.Millisecond)
			s, err := js.Stream(actx, name)
			acancel()
			if err != nil {
				return
			}
			ci := s.CachedInfo()
			if ci.Cluster == nil || ci.Cluster.Leader != me {
				return
			}
			t0 := time.Now()
			prefix := "$JS.API"
			if d.cfg.NATS.APIPrefix != "" {
				prefix = strings.TrimSuffix(d.cfg.NATS.APIPrefix, ".")
			}
			// To a server connected now: left to itself, JetStream may pick one that has
			// just gone (the others stopping too), and the stream waits for an election.
			var body []byte
			to := ""
			if peers := d.srv.Peers().Connected; len(peers) > 0 {
				to = peers[0]
				body, _ = json.Marshal(map[string]any{"placement": map[string]string{"preferred": to}})
			}
			msg, err := d.nc.RequestWithContext(ctx, prefix+".STREAM.LEADER.STEPDOWN."+name, body)
			if err != nil {
				d.log.Warn("could not hand over the stream leadership; the others elect a new leader when this node stops", "stream", name, "err", err)
				return
			}
			var resp struct {
				Error *struct {
					Description string `json:"description"`
				} `json:"error"`
			}
			if json.Unmarshal(msg.Data, &resp) == nil && resp.Error != nil {
				d.log.Warn("could not hand over the stream leadership; the others elect a new leader when this node stops", "stream", name, "err", resp.Error.Description)
				return
			}
			for ctx.Err() == nil {
				if p := d.srv.Peers(); !p.Quorum() || (to != "" && !slices.Contains(p.Connected, to)) {
					return // the others are stopping too: nobody to wait for
				}
				// Short attempts: a request made while there is no leader gets no answer.
				actx, acancel := context.WithTimeout(ctx, 250*time.Millisecond)
				info, err := s.Info(actx)
				acancel()
				if err == nil && info.Cluster != nil && info.Cluster.Leader != "" && info.Cluster.Leader != me {
					d.log.Info("stream leadership handed over", "stream", name, "to", info.Cluster.Leader,
						"took", time.Since(t0).Round(time.Millisecond))
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
			d.log.Warn("no new stream leader yet; stopping anyway", "stream", name, "waited", stepDownTimeout)
		}()
	}
	wg.Wait()
}
