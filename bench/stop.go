package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetcoord/coordinator/kv"
)

// Planned stops of many workers (issue 18), against one coordinator daemon at TTL 15s:
//   - stop_s_10000: SIGTERM of a holder of 10,000 workers until it exited;
//     stop_leases_lost_10000: the larger of the leases its engine lost on the way and the
//     claims that ran out (expiry markers) or were left in the store when it exited — a
//     planned stop should release every claim.
//   - drain_s_3333: three holders share 10,000 workers; one is drained (SIGUSR1) until the
//     other two own them all; drain_leases_lost_3333: the larger of the leases lost on any
//     holder and the claims that ran out meanwhile.
const (
	stopWorkers  = 10000
	drainWorkers = 10000 // over three holders: about 3,333 each
)

func (b *bench) stops(ctx context.Context) error {
	b.logf("stop: starting a coordinator daemon (TTL 15s, no workers)")
	c, err := b.startSingle("stop")
	if err != nil {
		return err
	}
	defer c.Close()
	url := c.Node(0).ClientURL()
	if err := b.stopFigures(url); err != nil {
		b.res.NA(fmt.Sprintf("stop_s_%d", stopWorkers), err.Error())
		return err
	}
	if ctx.Err() != nil || !b.opts.drain {
		return ctx.Err()
	}
	if err := b.drainFigures(url); err != nil {
		b.res.NA("drain_s_3333", err.Error())
		return err
	}
	return nil
}

func (b *bench) stopFigures(url string) error {
	const ns = "stop"
	b.logf("stop: holder with %d workers, then SIGTERM", stopWorkers)
	h, err := b.startHolder(url, ns, "holder", "s", stopWorkers, "-info")
	if err != nil {
		return err
	}
	defer b.stopHolder(h, fmt.Sprintf("stop of %d workers", stopWorkers))
	if err := h.WaitReady(time.Minute); err != nil {
		return err
	}
	if _, err := waitOwned([]*holder{h}, stopWorkers, 5*time.Second, 4*time.Minute); err != nil {
		return err
	}
	x, err := watchExpiries(url, ns)
	if err != nil {
		return err
	}
	defer x.Stop()
	lost0 := h.lost.Load()
	t0 := time.Now()
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(3 * time.Minute):
		return fmt.Errorf("the holder did not exit within 3 minutes of SIGTERM")
	}
	took := time.Since(t0)
	left, err := claimsIn(url, ns)
	if err != nil {
		return err
	}
	lost, expired := h.lost.Load()-lost0, x.n.Load()
	b.res.Add(fmt.Sprintf("stop_s_%d", stopWorkers), took.Seconds(), "s")
	// A lost lease usually also shows as an expired claim: count workers, not both.
	b.res.Add(fmt.Sprintf("stop_leases_lost_%d", stopWorkers), float64(max(lost, expired+int64(left))), "leases")
	b.res.Note("stop of %d workers: %d leases lost by the holder, %d claims expired, %d left in the store; progress: %s",
		stopWorkers, lost, expired, left, progressLines(h.logPath, "stop:"))
	return nil
}

func (b *bench) drainFigures(url string) error {
	const ns = "drain"
	b.logf("drain: 3 holders × %d workers, then drain one", drainWorkers)
	var hs []*holder
	defer func() {
		for _, h := range hs {
			b.stopHolder(h, "drain "+h.node)
		}
	}()
	for i := range 3 {
		h, err := b.startHolder(url, ns, fmt.Sprintf("d%d", i), "d", drainWorkers, "-info")
		if err != nil {
			return err
		}
		hs = append(hs, h)
	}
	for _, h := range hs {
		if err := h.WaitReady(time.Minute); err != nil {
			return err
		}
	}
	if _, err := waitOwned(hs, drainWorkers, 15*time.Second, 5*time.Minute); err != nil {
		return err
	}
	x, err := watchExpiries(url, ns)
	if err != nil {
		return err
	}
	defer x.Stop()
	var lost0 int64
	for _, h := range hs {
		lost0 += h.lost.Load()
	}
	onA := hs[0].owned.Load()
	t0 := time.Now()
	_ = hs[0].cmd.Process.Signal(syscall.SIGUSR1)
	deadline := time.Now().Add(3 * time.Minute)
	for hs[0].owned.Load() != 0 || hs[1].owned.Load()+hs[2].owned.Load() != drainWorkers {
		if time.Now().After(deadline) {
			return fmt.Errorf("drain not done after 3 minutes: owned %d, %d, %d", hs[0].owned.Load(), hs[1].owned.Load(), hs[2].owned.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(t0)
	var lost int64
	for _, h := range hs {
		lost += h.lost.Load()
	}
	lost -= lost0
	expired := x.n.Load()
	b.res.Add("drain_s_3333", took.Seconds(), "s")
	b.res.Add("drain_leases_lost_3333", float64(max(lost, expired)), "leases")
	b.res.Note("drain of %d workers (one of 3 holders): %d leases lost, %d claims expired; progress: %s",
		onA, lost, expired, progressLines(hs[0].logPath, "drain:"))
	return nil
}

// expiries counts the claims of a namespace that run out (the server's expiry markers).
type expiries struct {
	nc   *nats.Conn
	w    *kv.Watcher
	n    atomic.Int64
	done chan struct{}
}

func watchExpiries(url, ns string) (*expiries, error) {
	nc, err := nats.Connect(url, nats.Name("bench expiries"))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := kv.Open(ctx, nc, kv.Options{Namespace: ns})
	if err != nil {
		nc.Close()
		return nil, err
	}
	w, err := st.Workers.Watch(context.Background())
	if err != nil {
		nc.Close()
		return nil, err
	}
	x := &expiries{nc: nc, w: w, done: make(chan struct{})}
	go func() {
		defer close(x.done)
		synced := w.Synced()
		for {
			select {
			case <-synced:
				synced = nil
			case c, ok := <-w.Changes():
				if !ok {
					return
				}
				if synced == nil && c.Op == kv.OpExpire {
					x.n.Add(1)
				}
			}
		}
	}()
	select {
	case <-w.Synced():
	case <-time.After(time.Minute):
		x.Stop()
		return nil, fmt.Errorf("watch of %s's claims did not sync", ns)
	}
	return x, nil
}

func (x *expiries) Stop() {
	x.w.Stop()
	<-x.done
	x.nc.Close()
}

// claimsIn counts the live claims of namespace ns.
func claimsIn(url, ns string) (int, error) {
	counts, err := ownersIn(url, ns)
	n := 0
	for _, c := range counts {
		n += c
	}
	return n, err
}

// progressLines returns the messages of a holder's log lines that start with prefix, the
// library's progress reports, joined; "none" if there are none.
func progressLines(logPath, prefix string) string {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return "none"
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.Index(line, `msg="`+prefix); i >= 0 {
			rest := line[i+5:]
			if j := strings.IndexByte(rest, '"'); j >= 0 {
				out = append(out, rest[:j])
			}
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "; ")
}
