package ownership

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/natstest"
	"github.com/jetcoord/coordinator/kv"
)

// BenchmarkRegister10000 registers 10,000 workers on a started engine (one node, an
// in-process server) and reports how long the Register calls took (register_s, issue 16's
// register_s_10000) and until the node owned them all (owned_s):
//
//	go test -run '^$' -bench Register10000 -benchtime 1x ./ownership
func BenchmarkRegister10000(b *testing.B) {
	const n = 10000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		srv := natstest.Run(b)
		st, err := kv.Open(context.Background(), srv.Connect(), kv.Options{Namespace: fmt.Sprintf("r%d", i)})
		if err != nil {
			b.Fatal(err)
		}
		e, err := New(st, "a", DefaultConfig(), WithLogger(quiet), WithoutEvents())
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		for _, name := range names(n) {
			if err := e.Register(name, holdUntilDone); err != nil {
				b.Fatal(err)
			}
		}
		registered := time.Since(start)
		for len(e.Owned()) < n {
			time.Sleep(10 * time.Millisecond)
		}
		owned := time.Since(start)
		b.StopTimer()
		b.ReportMetric(registered.Seconds(), "register_s")
		b.ReportMetric(owned.Seconds(), "owned_s")
		if err := e.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
