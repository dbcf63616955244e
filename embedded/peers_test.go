package embedded

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPeers: a server of a cluster of three that runs alone says that 1 of 3 servers are
// connected and names the routes it lacks; with the others up it names them; without them
// it has no quorum again.
func TestPeers(t *testing.T) {
	t.Parallel()
	ports := freePorts(t, "127.0.0.1", 3)
	addrs := make([]string, 3)
	for i, p := range ports {
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	start := func(i int) *Server {
		return startServer(t, Config{Name: "n" + strconv.Itoa(i), DataDir: t.TempDir(), Listen: "127.0.0.1:-1",
			ClusterListen: addrs[i], Peers: addrs})
	}
	first := start(0)
	p := first.Peers()
	if p.Expected != 3 || len(p.Connected) != 0 || p.Quorum() || p.Complete() {
		t.Errorf("alone: %+v (quorum %v)", p, p.Quorum())
	}
	want := slices.Sorted(slices.Values(addrs[1:])) // in address order
	if !slices.Equal(p.Missing, want) {
		t.Errorf("alone: Missing = %v, want %v", p.Missing, want)
	}
	if s := p.String(); s != "1 of 3 servers connected; missing 2: no route to "+strings.Join(want, ", ") {
		t.Errorf("alone: %q", s)
	}
	others := []*Server{start(1), start(2)}
	deadline := time.Now().Add(30 * time.Second)
	for !first.Peers().Complete() {
		if time.Now().After(deadline) {
			t.Fatalf("never complete: %v", first.Peers())
		}
		time.Sleep(20 * time.Millisecond)
	}
	p = first.Peers()
	if !slices.Equal(p.Connected, []string{"n1", "n2"}) || !p.Quorum() || len(p.Missing) != 0 {
		t.Errorf("formed: %+v", p)
	}
	if s := p.String(); s != "3 of 3 servers connected (this one and n1, n2)" {
		t.Errorf("formed: %q", s)
	}
	for _, s := range others {
		s.Shutdown()
	}
	deadline = time.Now().Add(30 * time.Second)
	for first.Peers().Quorum() {
		if time.Now().After(deadline) {
			t.Fatalf("still a quorum with the others gone: %v", first.Peers())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
