package ownership

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/natstest"
	"github.com/jetcoord/coordinator/kv"
)

// go test -run '^$' -bench . ./ownership/

func benchStore(b *testing.B) *kv.Store {
	srv := natstest.Run(b)
	st, err := kv.Open(context.Background(), srv.Connect(), kv.Options{Namespace: "b"})
	if err != nil {
		b.Fatal(err)
	}
	return st
}

// BenchmarkClaim measures claims (compare-and-set creates of a claim record with a TTL)
// one at a time.
func BenchmarkClaim(b *testing.B) {
	st := benchStore(b)
	ctx := context.Background()
	c := kv.Claim{Node: "a", Incarnation: "i", TTL: kv.Duration(15 * time.Second), State: kv.StateRunning}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Worker = fmt.Sprintf("w%d", i)
		if _, err := st.Workers.Create(ctx, c.Worker, c.Encode(), 15*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
}

// BenchmarkClaim32 measures claims with 32 concurrent claimers.
func BenchmarkClaim32(b *testing.B) {
	st := benchStore(b)
	ctx := context.Background()
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := kv.Claim{Node: "a", Incarnation: "i", TTL: kv.Duration(15 * time.Second), State: kv.StateRunning}
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				c.Worker = fmt.Sprintf("w%d", i)
				if _, err := st.Workers.Create(ctx, c.Worker, c.Encode(), 15*time.Second); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
}

// BenchmarkHandoff measures the time from a graceful release (Close of the owner) to the
// next owner's worker starting.
func BenchmarkHandoff(b *testing.B) {
	srv := natstest.Run(b)
	open := func(node string, started chan<- time.Time, name string) *Engine {
		st, err := kv.Open(context.Background(), srv.Connect(), kv.Options{Namespace: "b"})
		if err != nil {
			b.Fatal(err)
		}
		e, err := New(st, node, ConfigForTTL(5*time.Second), WithLogger(quiet), WithoutEvents())
		if err != nil {
			b.Fatal(err)
		}
		_ = e.Register(name, func(ctx context.Context, l *Lease) error {
			started <- time.Now()
			<-ctx.Done()
			return nil
		})
		if err := e.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		return e
	}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		name := nameFor(fmt.Sprintf("h%d-", i), "a", "a", "b")
		started := make(chan time.Time, 4)
		a := open("a", started, name)
		<-started
		bb := open("b", started, name)
		t0 := time.Now()
		_ = a.Close()
		t1 := <-started
		total += t1.Sub(t0)
		_ = bb.Close()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "handoff-ms")
}

// BenchmarkCall measures a request/reply round trip to a worker owned by another engine
// (another connection), and reports the p99.
func BenchmarkCall(b *testing.B) {
	srv := natstest.Run(b)
	st, err := kv.Open(context.Background(), srv.Connect(), kv.Options{Namespace: "b"})
	if err != nil {
		b.Fatal(err)
	}
	e, err := New(st, "a", ConfigForTTL(5*time.Second), WithLogger(quiet), WithoutEvents())
	if err != nil {
		b.Fatal(err)
	}
	ready := make(chan struct{})
	_ = e.Register("svc", func(ctx context.Context, l *Lease) error { close(ready); <-ctx.Done(); return nil },
		WithHandler(func(ctx context.Context, l *Lease, req []byte) ([]byte, error) { return req, nil }))
	if err := e.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	<-ready
	caller := srv.Connect()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := Call(context.Background(), caller, "b", "svc", []byte(`{"op":"status"}`)); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sortDurations(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "median-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkSaveState measures one state checkpoint (read, token check, compare-and-set).
func BenchmarkSaveState(b *testing.B) {
	srv := natstest.Run(b)
	st, err := kv.Open(context.Background(), srv.Connect(), kv.Options{Namespace: "b"})
	if err != nil {
		b.Fatal(err)
	}
	e, err := New(st, "a", ConfigForTTL(5*time.Second), WithLogger(quiet), WithoutEvents())
	if err != nil {
		b.Fatal(err)
	}
	leases := make(chan *Lease, 1)
	_ = e.Register("svc", func(ctx context.Context, l *Lease) error { leases <- l; <-ctx.Done(); return nil })
	if err := e.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	l := <-leases
	data := make([]byte, 1024)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := l.SaveState(context.Background(), data); err != nil {
			b.Fatal(err)
		}
	}
}

func sortDurations(d []time.Duration) { sort.Slice(d, func(i, j int) bool { return d[i] < d[j] }) }
