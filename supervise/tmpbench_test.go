package supervise

import (
	"context"
	"testing"
	"time"
)

func TestTmpStopLatency(t *testing.T) {
	sp := NewSpares()
	defer sp.Close()
	sp.Prepare("")
	for i := 0; i < 5; i++ {
		log := newLogRecorder()
		dir := t.TempDir()
		spec := shSpec(t, dir, `exec sleep 100`, log)
		spec.Spares = sp
		started := make(chan struct{})
		spec.OnStart = func(int) { close(started) }
		ctx, cancel := context.WithCancel(context.Background())
		t0 := time.Now()
		ch := runAsync(ctx, spec, newTestLease(time.Minute))
		<-started
		t1 := time.Now()
		time.Sleep(200 * time.Millisecond)
		t2 := time.Now()
		cancel()
		<-ch
		t.Logf("start %v, stop→return %v", t1.Sub(t0), time.Since(t2))
	}
}
