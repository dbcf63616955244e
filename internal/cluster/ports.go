package cluster

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Ports for nodes are chosen when a cluster is made, but a node binds its HTTP port only
// once JetStream is up, seconds later. A port taken from the kernel's ephemeral range with
// bind(:0) can meanwhile become the local port of some outgoing connection, or be handed
// to another cluster started at the same moment — and then the harness talks to the wrong
// process. So ports come from below the ephemeral range, and each is reserved with an
// flock on a file in a directory shared by every process on the host, held until the
// cluster is closed.

// portRange is where reserved ports are drawn from: below the ephemeral range.
func portRange() (lo, hi int) {
	lo, hi = 20000, 32767
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(data))
	if len(f) == 2 {
		if eph, err := strconv.Atoi(f[0]); err == nil && eph > 11000 {
			return max(10000, eph-12000), eph - 1
		}
	}
	return lo, hi
}

// portLocks is where the reservation files live.
func portLocks() string { return filepath.Join(os.TempDir(), "coordinator-cluster-ports") }

// portReservation holds ports until release.
type portReservation struct {
	ports []int
	locks []*os.File
}

// reservePorts reserves n distinct ports that are free on 127.0.0.1 right now.
func reservePorts(n int) (*portReservation, error) {
	dir := portLocks()
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("cluster: ports: %w", err)
	}
	_ = os.Chmod(dir, 0o777) // shared by every user's tests
	lo, hi := portRange()
	r := &portReservation{}
	for tries := 0; len(r.ports) < n; tries++ {
		if tries > 200*n {
			r.release()
			return nil, fmt.Errorf("cluster: could not reserve %d free ports in %d-%d", n, lo, hi)
		}
		port := lo + rand.IntN(hi-lo+1)
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_RDWR|os.O_CREATE, 0o666)
		if err != nil {
			continue
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close() // reserved by another cluster, here or in another process
			continue
		}
		if !bindable(port) {
			f.Close()
			continue
		}
		r.ports = append(r.ports, port)
		r.locks = append(r.locks, f)
	}
	return r, nil
}

// bindable reports whether a TCP listener can bind 127.0.0.1:port now.
func bindable(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// release gives the ports back. Safe to call more than once.
func (r *portReservation) release() {
	for _, f := range r.locks {
		f.Close()
	}
	r.locks = nil
}
