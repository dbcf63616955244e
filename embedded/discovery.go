package embedded

import (
	"context"
	"net"
	"slices"
	"strconv"
	"time"
)

// resolve returns the route addresses (host:port) that Discover names, minus
// our own.
func (s *Server) resolve(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, min(s.cfg.DiscoverInterval, 5*time.Second))
	defer cancel()
	ips, err := s.cfg.Resolver.LookupHost(ctx, s.discoverName)
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, ip := range ips {
		if s.discoverPort == s.self.port && s.self.isIP(ip) {
			continue
		}
		addrs = append(addrs, net.JoinHostPort(ip, strconv.Itoa(s.discoverPort)))
	}
	slices.Sort(addrs)
	return slices.Compact(addrs), nil
}

// discoverLoop re-resolves the Discover name and hands new addresses to
// nats-server as routes by reloading its options.
//
// nats-server's route gossip connects every server to every other once one
// route is up, so discovery matters most for the first route of a server
// and for servers that come back at new addresses. The size of a new
// JetStream cluster is ClusterSize whatever discovery has found: Start hands
// nats-server exactly ClusterSize routes, and nats-server reads the size
// only once, when a new cluster starts.
func (s *Server) discoverLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.DiscoverInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.discoverOnce(ctx, time.Now())
	}
}

func (s *Server) discoverOnce(ctx context.Context, now time.Time) {
	addrs, err := s.resolve(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Debug("embedded: discovery lookup failed", "name", s.discoverName, "err", err)
		}
		return
	}
	changed := s.routes.merge(addrs, now)
	// An empty answer is more likely a DNS hiccup than a cluster gone.
	if len(addrs) > 0 && s.routes.prune(now.Add(-s.staleAfter)) {
		changed = true
	}
	if !changed && !s.dirty {
		return
	}
	n := s.routes.count()
	s.known.Store(int64(n))
	s.noteSeeds()
	if err := s.ns.ReloadOptions(s.options(0)); err != nil {
		s.dirty = true
		s.log.Warn("embedded: updating routes failed; will retry", "err", err)
		return
	}
	s.dirty = false
	s.log.Info("embedded: discovery updated routes", "name", s.discoverName, "found", n, "cluster_size", s.expected, "routes", s.routes.keys())
}
