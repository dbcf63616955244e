package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetcoord/coordinator/kv"
)

// claimRun is the outcome of one claims measurement.
type claimRun struct {
	Rate    float64         // claims per second
	Latency []time.Duration // of each claim
}

// measureClaims creates distinct claim records in the workers bucket of namespace ns at
// urls — compare-and-set creates with the claim TTL, what a node does to claim a worker —
// from conc goroutines for d, after a short warm-up.
func measureClaims(ctx context.Context, urls, ns string, replicas, conc int, d time.Duration) (claimRun, error) {
	nc, err := nats.Connect(urls, nats.Name("bench claims"), nats.Timeout(5*time.Second))
	if err != nil {
		return claimRun{}, err
	}
	defer nc.Close()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	st, err := kv.Open(octx, nc, kv.Options{Namespace: ns, Replicas: replicas})
	cancel()
	if err != nil {
		return claimRun{}, err
	}
	const ttl = 15 * time.Second
	claim := func(key string) (time.Duration, error) {
		c := kv.Claim{Worker: key, Node: "bench", Incarnation: "bench", TTL: kv.Duration(ttl), State: kv.StateRunning,
			Acquired: time.Now(), Renewed: time.Now()}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		t0 := time.Now()
		_, err := st.Workers.Create(cctx, key, c.Encode(), ttl)
		return time.Since(t0), err
	}
	for i := range 200 { // warm-up: connections, stream leader, caches
		if _, err := claim(fmt.Sprintf("warm-c%d-%d", conc, i)); err != nil {
			return claimRun{}, fmt.Errorf("warm-up claim: %w", err)
		}
	}

	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for g := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				l, err := claim(fmt.Sprintf("c%d-g%d-%d", conc, g, i))
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				mine = append(mine, l)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return claimRun{}, firstErr
	}
	return claimRun{Rate: float64(len(lat)) / elapsed.Seconds(), Latency: lat}, nil
}
