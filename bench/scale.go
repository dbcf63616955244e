package main

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// The scale phase (issue 16), against one coordinator daemon at TTL 15s, each figure with
// holder processes (holder.go) at the default timings:
//   - register_s_10000: a holder starts its engine with no workers, then registers 10,000
//     names; the time its Register calls took.
//   - renew_cpu_pct_10000, server_cpu_pct_10000, rss_mb_holder_10000: once that holder owns
//     all 10,000, its CPU and the daemon's (the NATS server serving it) over -cpu-window, and
//     its RSS.
//   - failover_all_s_10000: holder A owns 10,000 workers while two more holders with the
//     same names wait drained (they claim nothing); A is killed with SIGKILL and the two
//     undrained at once; the time until they own all 10,000 between them.
//   - renew_cpu_pct_100000 (and server_cpu_pct_100000, rss_mb_holder_100000): a holder of
//     100,000 workers, measured as above once it owns them all — "n/a" with the reason when
//     it does not own them within scaleClaimBound or its memory passes scaleRSSBoundMB.
const (
	scaleWorkers    = 10000
	scaleBigWorkers = 100000
	scaleClaimBound = 5 * time.Minute // to claim all of a holder's workers
	scaleFailBound  = 4 * time.Minute // from the kill to the survivors owning all
	scaleRSSBoundMB = 8192            // a holder past this is stopped: the machine is shared
)

func (b *bench) scale(ctx context.Context) error {
	b.logf("scale: starting a coordinator daemon (TTL 15s, no workers)")
	c, err := b.startSingle("scale")
	if err != nil {
		return err
	}
	defer c.Close()
	n := c.Node(0)
	url := n.ClientURL()

	if err := b.scaleRegister(url, n.PID()); err != nil {
		b.res.NA(fmt.Sprintf("register_s_%d", scaleWorkers), err.Error())
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := b.scaleFailover(url); err != nil {
		b.res.NA(fmt.Sprintf("failover_all_s_%d", scaleWorkers), err.Error())
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return b.scaleBig(url, n.PID())
}

// scaleRegister times Register of 10,000 names on a started engine, then measures the
// holder that owns them.
func (b *bench) scaleRegister(url string, daemonPID int) error {
	b.logf("scale: holder registering %d workers after Start", scaleWorkers)
	h, err := b.startHolder(url, "scale", "holder", "w", scaleWorkers, "-late")
	if err != nil {
		return err
	}
	defer b.stopHolder(h, fmt.Sprintf("scale %d workers", scaleWorkers))
	if err := h.WaitReady(time.Minute); err != nil {
		return err
	}
	select {
	case <-h.registered:
	case <-h.done:
		return fmt.Errorf("the holder exited while registering")
	case <-time.After(scaleClaimBound):
		return fmt.Errorf("registering %d names took longer than %v", scaleWorkers, scaleClaimBound)
	}
	b.res.Add(fmt.Sprintf("register_s_%d", scaleWorkers), h.registerS, "s")
	return b.measureHolder(h, daemonPID, scaleWorkers)
}

// measureHolder waits until h owns workers and measures its CPU, the daemon's and h's RSS
// under the names of the scale phase. A holder that does not own them all within
// scaleClaimBound, or grows past scaleRSSBoundMB, gives "n/a" figures with the reason.
func (b *bench) measureHolder(h *holder, daemonPID, workers int) error {
	cpuName := fmt.Sprintf("renew_cpu_pct_%d", workers)
	na := func(why string) {
		for _, name := range []string{cpuName, fmt.Sprintf("server_cpu_pct_%d", workers), fmt.Sprintf("rss_mb_holder_%d", workers)} {
			b.res.NA(name, why)
		}
		b.logf("  %s: n/a: %s", cpuName, why)
	}
	t0 := time.Now()
	deadline := t0.Add(scaleClaimBound)
	for h.owned.Load() != int64(workers) {
		select {
		case <-h.done:
			na("the holder exited before it owned its workers")
			return nil
		default:
		}
		if rss, err := rssMB(h.PID()); err == nil && rss > scaleRSSBoundMB {
			_ = h.cmd.Process.Kill()
			na(fmt.Sprintf("the holder's RSS passed %d MB while it owned %d of %d workers", scaleRSSBoundMB, h.owned.Load(), workers))
			return nil
		}
		if time.Now().After(deadline) {
			na(fmt.Sprintf("the holder owned %d of %d workers %v after it started", h.owned.Load(), workers, scaleClaimBound))
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.logf("  all %d claimed after %v; measuring CPU for %v", workers, time.Since(t0).Round(100*time.Millisecond), b.opts.cpuWindow)
	b.res.Note("scale: a holder owned all %d workers %v after it was ready", workers, time.Since(t0).Round(100*time.Millisecond))
	m, err := startCPU(h.PID(), daemonPID)
	if err != nil {
		return err
	}
	r0, e0 := h.renewals.Load(), h.errors.Load()
	time.Sleep(b.opts.cpuWindow)
	pct, err := m.Percent()
	if err != nil {
		return err
	}
	r1, e1 := h.renewals.Load(), h.errors.Load()
	b.res.Add(cpuName, pct[0], "%")
	b.res.Add(fmt.Sprintf("server_cpu_pct_%d", workers), pct[1], "%")
	if v, err := rssMB(h.PID()); err == nil {
		b.res.Add(fmt.Sprintf("rss_mb_holder_%d", workers), v, "MB")
	}
	// The names the single phase gives the same figures when the scale phase does not run.
	b.res.Add(fmt.Sprintf("renew_server_cpu_pct_%d", workers), pct[1], "%")
	b.res.Add(fmt.Sprintf("renewals_per_s_%d", workers), float64(r1-r0)/b.opts.cpuWindow.Seconds(), "renewals/s")
	b.res.Note("scale: %d workers: %d renewal errors, owned %d at the end of the CPU window", workers, e1-e0, h.owned.Load())
	return nil
}

// scaleFailover kills a holder of 10,000 workers and times the two survivors taking them.
func (b *bench) scaleFailover(url string) error {
	const ns = "scalefail"
	name := fmt.Sprintf("failover_all_s_%d", scaleWorkers)
	b.logf("scale: holder with %d workers and two drained ones, then SIGKILL", scaleWorkers)
	a, err := b.startHolder(url, ns, "a", "f", scaleWorkers)
	if err != nil {
		return err
	}
	hs := []*holder{a}
	defer func() {
		for _, h := range hs {
			b.stopHolder(h, "failover "+h.node)
		}
	}()
	if err := a.WaitReady(time.Minute); err != nil {
		return err
	}
	if _, err := waitOwned(hs, scaleWorkers, 2*time.Second, scaleClaimBound); err != nil {
		return err
	}
	for _, node := range []string{"b", "c"} {
		h, err := b.startHolder(url, ns, node, "f", scaleWorkers, "-drained")
		if err != nil {
			return err
		}
		hs = append(hs, h)
		if err := h.WaitReady(time.Minute); err != nil {
			return err
		}
	}
	// The drained holders claim nothing: A keeps all of them.
	if counts, err := waitOwned(hs, scaleWorkers, 5*time.Second, time.Minute); err != nil || counts[0] != scaleWorkers {
		return fmt.Errorf("before the kill the holders own %v, want all on a: %v", counts, err)
	}
	t0 := time.Now()
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	for _, h := range hs[1:] {
		_ = h.cmd.Process.Signal(syscall.SIGUSR2)
	}
	<-a.done
	a.owned.Store(0) // it printed no final line
	survivors := hs[1:]
	deadline := t0.Add(scaleFailBound)
	for {
		sum := int64(0)
		for _, h := range survivors {
			sum += h.owned.Load()
		}
		if sum == scaleWorkers {
			break
		}
		if time.Now().After(deadline) {
			why := fmt.Sprintf("the survivors owned %d of %d workers %v after the kill", sum, scaleWorkers, scaleFailBound)
			b.res.NA(name, why)
			b.logf("  %s: n/a: %s", name, why)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.res.Add(name, time.Since(t0).Seconds(), "s")
	b.res.Note("scale: failover of %d workers: survivors own %d and %d", scaleWorkers, survivors[0].owned.Load(), survivors[1].owned.Load())
	return nil
}

// scaleBig measures a holder of 100,000 workers, bounded.
func (b *bench) scaleBig(url string, daemonPID int) error {
	b.logf("scale: holder with %d workers", scaleBigWorkers)
	h, err := b.startHolder(url, "scalebig", "holder", "w", scaleBigWorkers)
	if err != nil {
		return err
	}
	defer b.stopHolder(h, fmt.Sprintf("scale %d workers", scaleBigWorkers))
	if err := h.WaitReady(2 * time.Minute); err != nil {
		return err
	}
	return b.measureHolder(h, daemonPID, scaleBigWorkers)
}
