package ownership

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/natstest"
	"github.com/jetcoord/coordinator/kv"
)

// vmRSS reads this process's resident set (the in-process server's included) in MB.
func vmRSS() (float64, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err == nil
		}
	}
	return 0, false
}

// BenchmarkHold10000 starts one engine with 10,000 no-op workers (an in-process server)
// and reports, once it owns them all, the process's RSS (the server's included), the heap
// and stacks in use, and the goroutines per held worker (issue 16: memory per held worker
// small enough for 100,000). HOLD_GCS=n runs n more collections before reading (stacks
// shrink at collections); HOLD_HEAP=file also writes a heap profile (go tool pprof -top
// file) and a goroutine profile (file.goroutines); HOLD_RATE=1 samples every allocation:
//
//	go test -run '^$' -bench Hold10000 -benchtime 1x ./ownership
func BenchmarkHold10000(b *testing.B) {
	const n = 10000
	gcs, _ := strconv.Atoi(os.Getenv("HOLD_GCS"))
	if r, err := strconv.Atoi(os.Getenv("HOLD_RATE")); err == nil {
		runtime.MemProfileRate = r // HOLD_RATE=1: every allocation in the profile
	}
	for i := 0; i < b.N; i++ {
		srv := natstest.Run(b)
		st, err := kv.Open(context.Background(), srv.Connect(), kv.Options{Namespace: fmt.Sprintf("h%d", i)})
		if err != nil {
			b.Fatal(err)
		}
		e, err := New(st, "a", DefaultConfig(), WithLogger(quiet), WithoutEvents())
		if err != nil {
			b.Fatal(err)
		}
		for _, name := range names(n) {
			if err := e.Register(name, holdUntilDone); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		if err := e.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Minute)
		for len(e.Owned()) < n {
			if time.Now().After(deadline) {
				b.Fatalf("owns %d of %d workers after 5 minutes", len(e.Owned()), n)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for range 1 + gcs {
			runtime.GC()
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		g1 := runtime.NumGoroutine()
		if rss, ok := vmRSS(); ok {
			b.ReportMetric(rss, "rss_MB")
		}
		b.ReportMetric(float64(after.HeapInuse)/(1<<20), "heap_MB")
		b.ReportMetric(float64(after.StackInuse)/(1<<20), "stack_MB")
		b.ReportMetric(float64(g1-g0)/n, "goroutines/held")
		b.ReportMetric(float64(int64(after.HeapInuse+after.StackInuse)-int64(before.HeapInuse+before.StackInuse))/n, "B/held")
		if f := os.Getenv("HOLD_HEAP"); f != "" {
			if out, err := os.Create(f); err == nil {
				_ = pprof.WriteHeapProfile(out)
				_ = out.Close()
			}
			if gf, err := os.Create(f + ".goroutines"); err == nil {
				_ = pprof.Lookup("goroutine").WriteTo(gf, 1)
				_ = gf.Close()
			}
		}
		if err := e.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestOneGoroutinePerHeldWorker pins the cost of a held worker in goroutines (issue 16): one,
// its function's. The term has none of its own, and no contend loop runs for a name held.
func TestOneGoroutinePerHeldWorker(t *testing.T) {
	const n = 200
	srv := natstest.Run(t)
	st, err := kv.Open(context.Background(), srv.Connect(), kv.Options{Namespace: "g1"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(st, "a", DefaultConfig(), WithLogger(quiet), WithoutEvents())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	for _, name := range names(n) {
		if err := e.Register(name, holdUntilDone); err != nil {
			t.Fatal(err)
		}
	}
	g0 := runtime.NumGoroutine()
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The engine's own goroutines (membership, watches, rebalance, the connection's) and
	// short-lived steps (a claim's refresh) come on top.
	const slack = 30
	deadline := time.Now().Add(time.Minute)
	for {
		g := runtime.NumGoroutine() - g0
		if len(e.Owned()) == n && g <= n+slack {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("owns %d of %d workers with %d goroutines more than before Start: want at most %d (one per held worker)",
				len(e.Owned()), n, g, n+slack)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
