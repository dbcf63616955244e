package embedded

import (
	"context"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// selfAddr recognises this server's own route address among peers and
// discovered addresses, so that the expected cluster size counts it once.
type selfAddr struct {
	host string // as configured; 127.0.0.1 when it was empty
	port int
	ips  map[string]bool
}

func newSelfAddr(ctx context.Context, r Resolver, host string, port int) selfAddr {
	s := selfAddr{host: host, port: port, ips: map[string]bool{}}
	ip := net.ParseIP(host)
	switch {
	case ip != nil && ip.IsUnspecified():
		// Listening everywhere: any local address reaches us.
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok {
					s.ips[ipn.IP.String()] = true
				}
			}
		}
	case ip != nil:
		s.ips[ip.String()] = true
	default:
		for _, a := range lookup(ctx, r, host) {
			if p := net.ParseIP(a); p != nil {
				s.ips[p.String()] = true
			}
		}
	}
	return s
}

// key is our route as HOST:PORT with a host this machine can dial.
func (s selfAddr) key() string { return net.JoinHostPort(dialable(s.host), strconv.Itoa(s.port)) }

func (s selfAddr) isIP(ip string) bool {
	if p := net.ParseIP(ip); p != nil {
		return s.ips[p.String()]
	}
	return false
}

// is reports whether host:port names this server. Host names are resolved;
// one that does not resolve is taken to be another server.
func (s selfAddr) is(ctx context.Context, r Resolver, host string, port int) bool {
	if port != s.port {
		return false
	}
	if strings.EqualFold(host, s.host) {
		return true
	}
	// Our own name may not resolve yet when we start (a container whose
	// DNS entry appears later); the host name still identifies us.
	if h, err := os.Hostname(); err == nil && strings.EqualFold(host, h) {
		return true
	}
	if net.ParseIP(host) != nil {
		return s.isIP(host)
	}
	for _, a := range lookup(ctx, r, host) {
		if s.isIP(a) {
			return true
		}
	}
	return false
}

func lookup(ctx context.Context, r Resolver, host string) []string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, host)
	if err != nil {
		return nil
	}
	return addrs
}

// routeSet is the route list handed to nats-server: our own address, the
// static peers, and what discovery found.
type routeSet struct {
	self   string               // host:port
	static []string             // host:port, never ours
	found  map[string]time.Time // host:port -> last seen in DNS
}

// count is the number of distinct servers the routes name, us included.
func (rs *routeSet) count() int { return len(rs.keys()) }

// keys lists the servers the routes name: ours first, then the others
// sorted.
func (rs *routeSet) keys() []string {
	var others []string
	others = append(others, rs.static...)
	for k := range rs.found {
		others = append(others, k)
	}
	slices.Sort(others)
	others = slices.Compact(others)
	return append([]string{rs.self}, others...)
}

// urls lists the routes for nats-server. With size > 0 the list has exactly
// size entries, because nats-server takes the size of a new JetStream meta
// group from the number of routes: surplus routes are left out (they are
// added once the server runs) and a short list is padded with copies of our
// own route, which nats-server dials once, recognises and drops.
//
// The list is sorted: ReloadOptions sorts the running server's route slice
// in place (reload.go imposeOrder) while route goroutines read it, a data
// race unless the slice is sorted already.
func (rs *routeSet) urls(size int) []*url.URL {
	keys := rs.keys()
	if size > 0 {
		keys = keys[:min(size, len(keys))]
		for len(keys) < size {
			keys = append(keys, rs.self)
		}
	}
	slices.Sort(keys)
	urls := make([]*url.URL, 0, len(keys))
	for _, k := range keys {
		urls = append(urls, &url.URL{Scheme: "nats-route", Host: k})
	}
	return urls
}

// merge records addresses seen now and reports whether any is new.
func (rs *routeSet) merge(addrs []string, now time.Time) bool {
	added := false
	for _, a := range addrs {
		if a == rs.self || slices.Contains(rs.static, a) {
			continue
		}
		if _, ok := rs.found[a]; !ok {
			added = true
		}
		rs.found[a] = now
	}
	return added
}

// prune forgets discovered addresses not seen since before, so that a
// long-lived node does not keep dialling the old addresses of restarted
// peers forever. Static peers stay.
func (rs *routeSet) prune(before time.Time) bool {
	removed := false
	for a, seen := range rs.found {
		if seen.Before(before) {
			delete(rs.found, a)
			removed = true
		}
	}
	return removed
}
