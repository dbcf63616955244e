package main

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// routeNet sits between the nodes' routes: every route connection between two embedded
// servers goes through it, so that one node can be cut off from the others (a partition)
// while clients and the node's own coordinator still reach its server.
//
// Why a grid of listeners: nats-server gossips the route URL of a new peer to its other
// routes, built from the remote IP of the connection it sees plus the peer's route port,
// and a server that has no route to that peer yet dials the gossiped URL directly. With a
// single proxy per node on 127.0.0.1 that URL would be the node's real listener, and the
// route would bypass the proxy. So node j gets its own loopback IP ips[j], and there is a
// listener on every ips[k]:port(i), forwarding to node i; the dial to node i goes out from
// the listener's own IP. Whatever address a node learns by gossip, it lands on a listener
// of this grid and the connection is seen here.
//
// Which node dialled a connection is not in the packets that matter, so on accept the
// dialling socket is looked up in /proc/net/tcp and its inode among the open files of each
// coordinator process (the embedded server lives in it).
type routeNet struct {
	nodes []*cluster.Node
	ips   []net.IP // ips[j]: the loopback address standing for node j
	lns   []net.Listener
	logf  func(format string, args ...any)

	mu       sync.Mutex
	cond     *sync.Cond
	isolated int // node index cut off from the others, or -1
	closed   bool
	links    map[*link]struct{}
	unknown  int // connections whose dialer was not found

	wg sync.WaitGroup
}

// link is one proxied route connection.
type link struct {
	in, out net.Conn
	dialer  int // node index, or -1 when not found
	target  int
	dead    bool
}

// routeIPBase is the first loopback address of the grid: 127.77.0.1, 127.77.0.2, …
var routeIPBase = net.IPv4(127, 77, 0, 1).To4()

func newRouteNet(nodes []*cluster.Node, logf func(string, ...any)) (*routeNet, error) {
	r := &routeNet{nodes: nodes, isolated: -1, links: map[*link]struct{}{}, logf: logf}
	r.cond = sync.NewCond(&r.mu)
	for j := range nodes {
		ip := make(net.IP, 4)
		copy(ip, routeIPBase)
		ip[3] += byte(j)
		r.ips = append(r.ips, ip)
	}
	for k := range nodes {
		for i, n := range nodes {
			port, err := routePort(n)
			if err != nil {
				r.Close()
				return nil, err
			}
			addr := net.JoinHostPort(r.ips[k].String(), strconv.Itoa(port))
			ln, err := net.Listen("tcp4", addr)
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("route proxy: listen on %s (needs the 127.0.0.0/8 loopback range): %w", addr, err)
			}
			r.lns = append(r.lns, ln)
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.accept(ln, r.ips[k], i)
			}()
		}
	}
	return r, nil
}

func routePort(n *cluster.Node) (int, error) {
	_, p, err := net.SplitHostPort(n.RouteAddr())
	if err != nil {
		return 0, fmt.Errorf("route proxy: %s has no route address (%q)", n.Name(), n.RouteAddr())
	}
	return strconv.Atoi(p)
}

// Addr is where the others reach node i: ips[i]:route port of i.
func (r *routeNet) Addr(i int) string {
	port, _ := routePort(r.nodes[i])
	return net.JoinHostPort(r.ips[i].String(), strconv.Itoa(port))
}

// WriteMap writes the file the coordinator wrapper reads: one "real proxied" pair a line.
func (r *routeNet) WriteMap(path string) error {
	var b strings.Builder
	for i, n := range r.nodes {
		fmt.Fprintf(&b, "%s %s\n", n.RouteAddr(), r.Addr(i))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// Isolate cuts node i off from the others: traffic on every route connection that node i
// dialled or accepted is held back, both ways, on existing and new connections. TCP does
// not notice; the servers see silence, as behind a dropped network.
func (r *routeNet) Isolate(i int) {
	r.mu.Lock()
	r.isolated = i
	r.mu.Unlock()
}

// Heal lets held-back traffic through and forwards again.
func (r *routeNet) Heal() {
	r.mu.Lock()
	r.isolated = -1
	r.cond.Broadcast()
	r.mu.Unlock()
}

// Stats returns the number of open proxied connections and of those whose dialer was
// not identified.
func (r *routeNet) Stats() (open, unknown int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.links), r.unknown
}

// Close stops every listener and connection and waits for the goroutines.
func (r *routeNet) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	for l := range r.links {
		l.in.Close()
		if l.out != nil {
			l.out.Close()
		}
	}
	r.cond.Broadcast()
	r.mu.Unlock()
	for _, ln := range r.lns {
		ln.Close()
	}
	r.wg.Wait()
}

func (r *routeNet) blocked(l *link) bool {
	return r.isolated >= 0 && (l.dialer == r.isolated || l.target == r.isolated || l.dialer < 0)
}

func (r *routeNet) accept(ln net.Listener, ip net.IP, target int) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.serve(in, ip, target)
		}()
	}
}

func (r *routeNet) serve(in net.Conn, ip net.IP, target int) {
	l := &link{in: in, target: target, dialer: r.dialerOf(in)}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		in.Close()
		return
	}
	if l.dialer < 0 {
		r.unknown++
	}
	r.links[l] = struct{}{}
	r.mu.Unlock()
	defer r.drop(l)

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 2 * time.Second}
	out, err := d.Dial("tcp4", r.nodes[target].RouteAddr())
	if err != nil {
		return // the target is down: the dialer sees its connection end
	}
	r.mu.Lock()
	l.out = out
	dead := l.dead || r.closed
	r.mu.Unlock()
	if dead {
		out.Close()
		return
	}
	done := make(chan struct{}, 2)
	r.wg.Add(2)
	go func() { defer r.wg.Done(); r.pipe(l, out, in); done <- struct{}{} }()
	go func() { defer r.wg.Done(); r.pipe(l, in, out); done <- struct{}{} }()
	<-done
	r.kill(l)
	<-done
}

// pipe copies src to dst, holding each chunk while the link is cut.
func (r *routeNet) pipe(l *link, dst, src net.Conn) {
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			for r.blocked(l) && !l.dead && !r.closed {
				r.cond.Wait()
			}
			stop := l.dead || r.closed
			r.mu.Unlock()
			if stop {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// kill closes both sides of l and wakes its held pipes.
func (r *routeNet) kill(l *link) {
	r.mu.Lock()
	l.dead = true
	r.cond.Broadcast()
	r.mu.Unlock()
	l.in.Close()
	if l.out != nil {
		l.out.Close()
	}
}

func (r *routeNet) drop(l *link) {
	r.kill(l)
	r.mu.Lock()
	delete(r.links, l)
	r.mu.Unlock()
}

// dialerOf finds the node whose coordinator process owns the other end of in.
func (r *routeNet) dialerOf(in net.Conn) int {
	remote, ok1 := in.RemoteAddr().(*net.TCPAddr)
	local, ok2 := in.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return -1
	}
	// The dialer's socket: local = our remote, remote = our local.
	inode, err := socketInode(remote, local)
	if err != nil {
		r.logf("route proxy: dialer of %v → %v: %v", remote, local, err)
		return -1
	}
	target := "socket:[" + inode + "]"
	for i, n := range r.nodes {
		pid := n.PID()
		if pid == 0 {
			continue
		}
		dir := "/proc/" + strconv.Itoa(pid) + "/fd"
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && l == target {
				return i
			}
		}
	}
	r.logf("route proxy: no node owns the socket %v → %v (inode %s)", remote, local, inode)
	return -1
}

// socketInode returns the inode of the IPv4 TCP socket bound to local and connected to
// remote, from /proc/net/tcp.
func socketInode(local, remote *net.TCPAddr) (string, error) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return "", err
	}
	defer f.Close()
	want := procAddr(local) + " " + procAddr(remote)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || fs[1]+" "+fs[2] != want {
			continue
		}
		return fs[9], nil
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("socket not in /proc/net/tcp")
}

// procAddr spells an IPv4 address the way /proc/net/tcp does: the address as a
// little-endian 32-bit hex number, the port big-endian.
func procAddr(a *net.TCPAddr) string {
	ip := a.IP.To4()
	if ip == nil {
		return ""
	}
	le := []byte{ip[3], ip[2], ip[1], ip[0]}
	return strings.ToUpper(hex.EncodeToString(le)) + fmt.Sprintf(":%04X", a.Port)
}

// Bypasses lists the established TCP connections that reach a node's real route port
// from 127.0.0.1, that is, not through this grid (whose dials leave from its own IPs). A
// node's short-lived connection to itself at start-up looks the same; callers look twice.
func (r *routeNet) Bypasses() []string {
	ports := map[string]bool{}
	for _, n := range r.nodes {
		if p, err := routePort(n); err == nil {
			ports[fmt.Sprintf("0100007F:%04X", p)] = true
		}
	}
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		fs := strings.Fields(line)
		if len(fs) < 4 || fs[3] != "01" { // 01: ESTABLISHED
			continue
		}
		if ports[fs[2]] && strings.HasPrefix(fs[1], "0100007F:") {
			out = append(out, fs[1]+"->"+fs[2])
		}
	}
	return out
}
