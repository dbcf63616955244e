package supervise

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestSpares: Run takes the spare watchdog started ahead (the command runs under it), a
// new spare replaces it, output is still logged, and Close ends the spares (goleak checks
// the goroutines, the test the processes).
func TestSpares(t *testing.T) {
	sp := NewSpares()
	sp.Prepare("")
	var spare *run
	poll(t, "a spare watchdog", func() bool {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		if len(sp.spare[DefaultShim]) == 0 {
			return false
		}
		spare = sp.spare[DefaultShim][0]
		return true
	})
	sparePid := spare.cmd.Process.Pid
	log := newLogRecorder()
	spec := shSpec(t, t.TempDir(), `echo hello`, log)
	spec.Spares = sp
	// The next spare must not start while this command starts: its fork and exec of the
	// whole binary would compete with the command's for the CPU (issue 14).
	refilling := false
	spec.OnStart = func(int) {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		refilling = sp.filling[DefaultShim] > 0 || len(sp.spare[DefaultShim]) > 0
	}
	watchdog := ""
	if err := Run(context.Background(), spec, newTestLease(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, r := range log.records() {
		if r.msg == "command started" {
			watchdog = r.attrs["watchdog_pid"]
		}
	}
	if refilling {
		t.Errorf("the next spare was started before the command that took the spare had started")
	}
	if watchdog != strconv.Itoa(sparePid) {
		t.Errorf("the command ran under watchdog %s, not the spare %d", watchdog, sparePid)
	}
	if _, ok := log.find("hello"); !ok {
		t.Errorf("output not logged: %v", log.records())
	}
	poll(t, "the next spare", func() bool {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		return len(sp.spare[DefaultShim]) == 1
	})
	sp.mu.Lock()
	next := sp.spare[DefaultShim][0].cmd.Process.Pid
	sp.mu.Unlock()
	sp.Close()
	sp.Close()
	if _, ok := procStartTime(next); ok {
		t.Errorf("spare watchdog %d still runs after Close", next)
	}
}

// TestSparesKeep: with Keep(2), two commands started at once both run under a spare,
// and two new spares replace them.
func TestSparesKeep(t *testing.T) {
	sp := NewSpares()
	defer sp.Close()
	sp.Keep("", 2)
	spares := map[string]bool{}
	poll(t, "two spare watchdogs", func() bool {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		for _, r := range sp.spare[DefaultShim] {
			spares[strconv.Itoa(r.cmd.Process.Pid)] = true
		}
		return len(sp.spare[DefaultShim]) == 2
	})
	logs := []*logRecorder{newLogRecorder(), newLogRecorder()}
	errs := make(chan error, 2)
	for _, log := range logs {
		spec := shSpec(t, t.TempDir(), `true`, log)
		spec.Spares = sp
		go func() { errs <- Run(context.Background(), spec, newTestLease(time.Minute)) }()
	}
	for range logs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, log := range logs {
		r, ok := log.find("command started")
		if !ok || !spares[r.attrs["watchdog_pid"]] {
			t.Errorf("command %d ran under watchdog %q, not one of the spares %v", i, r.attrs["watchdog_pid"], spares)
		}
	}
	poll(t, "two new spares", func() bool {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		return len(sp.spare[DefaultShim]) == 2
	})
}

// TestSparesRefillWhileRunning: the spare a long-running command took is replaced while
// that command still runs (refillDelay after its start), not only once it has ended.
func TestSparesRefillWhileRunning(t *testing.T) {
	sp := NewSpares()
	defer sp.Close()
	sp.Prepare("")
	poll(t, "a spare watchdog", func() bool {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		return len(sp.spare[DefaultShim]) == 1
	})
	spec := shSpec(t, t.TempDir(), `exec sleep 60`, newLogRecorder())
	spec.Spares = sp
	started := make(chan struct{})
	spec.OnStart = func(int) { close(started) }
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, spec, newTestLease(time.Minute)) }()
	<-started
	poll(t, "the next spare while the command runs", func() bool {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		return len(sp.spare[DefaultShim]) == 1
	})
	select {
	case err := <-errc:
		t.Fatalf("the command ended early: %v", err)
	default:
	}
	cancel()
	if err := <-errc; !errors.Is(err, ErrStopped) {
		t.Errorf("Run: %v, want ErrStopped", err)
	}
}

// TestRunReturnsAtExitReport: with Spares, Run returns once the watchdog has reported the
// command's end and the output has been read, without waiting for the watchdog process to
// exit (a few ms, tens on a busy machine, of every handoff: issue 14); Close reaps it, and
// kills one that stays.
func TestRunReturnsAtExitReport(t *testing.T) {
	sp := NewSpares()
	defer sp.Close()
	os.Setenv(lingerEnv, "1") // the spare started now stays a minute after its last report
	defer os.Unsetenv(lingerEnv)
	sp.Prepare("")
	var spare int
	poll(t, "a spare watchdog", func() bool {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		if len(sp.spare[DefaultShim]) == 0 {
			return false
		}
		spare = sp.spare[DefaultShim][0].cmd.Process.Pid
		return true
	})
	os.Unsetenv(lingerEnv) // the next spares exit as usual
	log := newLogRecorder()
	spec := shSpec(t, t.TempDir(), `echo bye`, log)
	spec.Spares = sp
	if err := Run(context.Background(), spec, newTestLease(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, ok := log.find("bye"); !ok {
		t.Errorf("the command's last output was not logged before Run returned: %v", log.records())
	}
	if state, ok := procState(spare); !ok || state == 'Z' {
		t.Fatalf("Run returned only once watchdog %d had exited (state %q), which stays a minute after its last report", spare, state)
	}
	sp.Close()
	if _, ok := procStartTime(spare); ok {
		t.Errorf("watchdog %d still there after Close", spare)
	}
}

// procState returns the state letter of process pid.
func procState(pid int) (byte, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return 0, false
	}
	return data[i+2], true
}

// poll waits up to 10 s for cond.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
