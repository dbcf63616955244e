package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// The test binary is also the watchdog (Spec.Shim defaults to the running binary) and,
// with helperEnv set, a fake coordinator that tests can SIGKILL or SIGSTOP.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == watchdogArg && os.Getenv(lingerEnv) != "" {
		// A watchdog slow to exit after its last report (TestRunReturnsAtExitReport).
		code := runWatchdog()
		time.Sleep(time.Minute)
		os.Exit(code)
	}
	MaybeRunWatchdog()
	if os.Getenv(helperEnv) != "" {
		os.Exit(runFakeCoordinator())
	}
	// Under -race every Go process sleeps 1s before it exits (GORACE atexit_sleep_ms),
	// which would add a second to each Run whose watchdog is this binary.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	goleak.VerifyTestMain(m)
}

const (
	helperEnv       = "SUPERVISE_TEST_HELPER"
	helperDirEnv    = "SUPERVISE_TEST_DIR"
	helperScriptEnv = "SUPERVISE_TEST_SCRIPT"
	helperTTLEnv    = "SUPERVISE_TEST_TTL"
	helperGraceEnv  = "SUPERVISE_TEST_FENCE_GRACE"
	lingerEnv       = "SUPERVISE_TEST_LINGER"
)

// runFakeCoordinator runs a script under Run with a lease that it extends every TTL/10
// until it is stopped or killed, and prints Run's result.
func runFakeCoordinator() int {
	ttl, err := time.ParseDuration(os.Getenv(helperTTLEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad TTL:", err)
		return 2
	}
	grace, _ := time.ParseDuration(os.Getenv(helperGraceEnv))
	lease := newTestLease(ttl)
	stop := lease.keepExtending(ttl, ttl/10)
	defer stop()
	spec := Spec{
		Name:       "fake",
		Command:    "/bin/sh",
		Args:       []string{"-c", os.Getenv(helperScriptEnv)},
		Env:        []string{"D=" + os.Getenv(helperDirEnv)},
		FenceGrace: grace,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	err = Run(context.Background(), spec, lease)
	fmt.Printf("result: %v\n", err)
	if errors.Is(err, ErrFenced) {
		fmt.Println("fenced")
	}
	return 0
}

// testLease is a Lease whose deadline the test moves.
type testLease struct {
	mu       sync.Mutex
	deadline time.Time
	changed  chan struct{}
}

func newTestLease(ttl time.Duration) *testLease {
	return &testLease{deadline: time.Now().Add(ttl), changed: make(chan struct{})}
}

func (l *testLease) Token() uint64 { return 4711 }

func (l *testLease) Deadline() (time.Time, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline, l.changed
}

func (l *testLease) extend(ttl time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deadline = time.Now().Add(ttl)
	close(l.changed)
	l.changed = make(chan struct{})
}

// keepExtending renews the lease every interval, as an owner would, until stop is called.
func (l *testLease) keepExtending(ttl, every time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				l.extend(ttl)
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// logRecorder is a slog.Handler that keeps every record with its attributes flattened.
type logRecorder struct {
	mu   *sync.Mutex
	recs *[]logRecord
	with []slog.Attr
}

type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func newLogRecorder() *logRecorder {
	return &logRecorder{mu: new(sync.Mutex), recs: new([]logRecord)}
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.with {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, rec)
	return nil
}

func (h *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.with = append(slices.Clip(h.with), as...)
	return &c
}

func (h *logRecorder) WithGroup(string) slog.Handler { return h }

func (h *logRecorder) records() []logRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(*h.recs)
}

// find returns the first record with message msg.
func (h *logRecorder) find(msg string) (logRecord, bool) {
	for _, r := range h.records() {
		if r.msg == msg {
			return r, true
		}
	}
	return logRecord{}, false
}

// proc is a process the test saw, identified by pid and start time so that a reused pid
// is never mistaken for it.
type proc struct {
	pid   int
	start string
}

func procStartTime(pid int) (string, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+2:])
	if len(f) < 20 {
		return "", false
	}
	return f[19], true // starttime, field 22
}

// trackProc records pid and makes sure, in Cleanup, that it is dead.
func trackProc(t *testing.T, pid int) proc {
	t.Helper()
	start, ok := procStartTime(pid)
	if !ok {
		return proc{pid: pid} // already gone
	}
	p := proc{pid: pid, start: start}
	t.Cleanup(func() {
		if !p.gone() {
			t.Errorf("process %d still alive at cleanup; killing it", p.pid)
			_ = unix.Kill(p.pid, syscall.SIGKILL)
		}
	})
	return p
}

// gone reports whether the process has exited (a zombie counts as exited).
func (p proc) gone() bool {
	if p.start == "" {
		return true
	}
	if err := unix.Kill(p.pid, 0); errors.Is(err, unix.ESRCH) {
		return true
	}
	start, ok := procStartTime(p.pid)
	if !ok || start != p.start {
		return true
	}
	state, _, ok := procStat(p.pid)
	return !ok || state == 'Z' || state == 'X'
}

func (p proc) stopped() bool {
	state, _, ok := procStat(p.pid)
	return ok && (state == 'T' || state == 't')
}

func (p proc) parent() int {
	_, ppid, _ := procStat(p.pid)
	return ppid
}

// waitGone polls until p has exited and returns when it noticed, or fails after within.
func waitGone(t *testing.T, what string, p proc, within time.Duration) time.Time {
	t.Helper()
	end := time.Now().Add(within)
	for !p.gone() {
		if time.Now().After(end) {
			t.Fatalf("%s (pid %d) still alive after %v", what, p.pid, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Now()
}

// readPid polls for a file holding a pid, written by a script with "echo $$ > f.tmp && mv".
func readPid(t *testing.T, path string, within time.Duration) int {
	t.Helper()
	end := time.Now().Add(within)
	for {
		if data, err := os.ReadFile(path); err == nil {
			pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			return pid
		}
		if time.Now().After(end) {
			t.Fatalf("%s not written within %v", path, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runAsync runs Run in a goroutine; the result arrives on the channel.
func runAsync(ctx context.Context, spec Spec, lease Lease) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- Run(ctx, spec, lease) }()
	return ch
}

func waitResult(t *testing.T, ch <-chan error, within time.Duration) (error, time.Time) {
	t.Helper()
	select {
	case err := <-ch:
		return err, time.Now()
	case <-time.After(within):
		t.Fatalf("Run did not return within %v", within)
		return nil, time.Time{}
	}
}

// shSpec is a Spec running script with $D set to dir.
func shSpec(t *testing.T, dir, script string, log *logRecorder) Spec {
	t.Helper()
	return Spec{
		Name:    strings.ReplaceAll(t.Name(), "/", "."),
		Command: "sh",
		Args:    []string{"-c", script},
		Env:     []string{"D=" + dir},
		Logger:  slog.New(log),
	}
}

// writePid is a script fragment that publishes the shell's pid atomically.
const writePid = `echo $$ > "$D/pid.tmp" && mv "$D/pid.tmp" "$D/pid"; `

// spawnGrandchild is a script fragment that starts a long sleep in the background and
// publishes its pid.
const spawnGrandchild = `sleep 1000 & echo $! > "$D/gpid.tmp" && mv "$D/gpid.tmp" "$D/gpid"; `

func pidFile(dir, name string) string { return filepath.Join(dir, name) }
