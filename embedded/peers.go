package embedded

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// Peers is what a server sees of the other servers of its cluster now.
type Peers struct {
	// Expected is the number of servers the cluster is meant to have, this one included
	// (1 when not clustered).
	Expected int
	// Connected names the other servers a route is up to, sorted.
	Connected []string
	// Missing lists, sorted, the routes (host:port) no server is connected through, when that can be
	// told; it may be empty while servers are missing (a route that the other server
	// opened does not say which of our routes it answers).
	Missing []string
}

// Quorum reports whether this server and the connected ones are a majority of Expected:
// what a replicated stream needs to take a write.
func (p Peers) Quorum() bool { return len(p.Connected)+1 >= p.Expected/2+1 }

// Complete reports whether every expected server is connected.
func (p Peers) Complete() bool { return len(p.Connected)+1 >= p.Expected }

// String says how many of the expected servers are connected, and which are missing:
// "2 of 3 servers connected (n1, n2); missing 1: 127.0.0.1:6224".
func (p Peers) String() string {
	have := len(p.Connected) + 1
	s := fmt.Sprintf("%d of %d servers connected", have, p.Expected)
	if len(p.Connected) > 0 {
		s += " (this one and " + strings.Join(p.Connected, ", ") + ")"
	}
	if n := p.Expected - have; n > 0 {
		s += fmt.Sprintf("; missing %d", n)
		if len(p.Missing) > 0 {
			s += ": no route to " + strings.Join(p.Missing, ", ")
		}
	}
	return s
}

// Peers returns the other servers connected now. It does no I/O.
func (s *Server) Peers() Peers {
	p := Peers{Expected: max(1, s.expected)}
	if !s.clustered {
		return p
	}
	rz, err := s.ns.Routez(&server.RoutezOptions{})
	if err != nil {
		return p
	}
	solicited := map[string]bool{}
	for _, r := range rz.Routes {
		if r.RemoteName != "" && !slices.Contains(p.Connected, r.RemoteName) {
			p.Connected = append(p.Connected, r.RemoteName)
		}
		if r.DidSolicit {
			solicited[net.JoinHostPort(dialable(r.IP), strconv.Itoa(r.Port))] = true
		}
	}
	slices.Sort(p.Connected)
	var missing []string
	if seeds := s.seeds.Load(); seeds != nil {
		for _, k := range *seeds {
			if !solicited[k] {
				missing = append(missing, k)
			}
		}
	}
	slices.Sort(missing)
	// Only when the routes account for every missing server exactly do they say which.
	if len(missing) == p.Expected-1-len(p.Connected) {
		p.Missing = missing
	}
	return p
}

// noteSeeds keeps the routes' addresses for Peers (called where s.routes changes).
func (s *Server) noteSeeds() {
	keys := s.routes.keys()[1:]
	s.seeds.Store(&keys)
}
