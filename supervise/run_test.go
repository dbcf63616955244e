package supervise

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const runBound = 20 * time.Second // generous: only a hang fails it

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		script string
		code   int
		signal syscall.Signal
	}{
		{"exit 0", 0, 0},
		{"exit 3", 3, 0},
		{"exit 255", 255, 0},
		{"kill -KILL $$", -1, syscall.SIGKILL},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			log := newLogRecorder()
			err := Run(context.Background(), shSpec(t, t.TempDir(), tt.script, log), newTestLease(time.Minute))
			if tt.code == 0 && tt.signal == 0 {
				if err != nil {
					t.Fatalf("Run = %v, want nil", err)
				}
				return
			}
			var ee *ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("Run = %v, want an *ExitError", err)
			}
			if ee.Code != tt.code || ee.Signal != tt.signal {
				t.Errorf("ExitError = code %d signal %v, want code %d signal %v", ee.Code, ee.Signal, tt.code, tt.signal)
			}
			if errors.Is(err, ErrFenced) || errors.Is(err, ErrStopped) {
				t.Errorf("Run = %v: a command that ended by itself is neither fenced nor stopped", err)
			}
		})
	}
}

func TestRunLogsOutputLines(t *testing.T) {
	log := newLogRecorder()
	spec := shSpec(t, t.TempDir(), `echo hello; echo oops >&2; echo; printf 'last line'`, log)
	spec.Name = "greeter"
	if err := Run(context.Background(), spec, newTestLease(time.Minute)); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"hello": "stdout", "oops": "stderr", "last line": "stdout"}
	for msg, stream := range want {
		r, ok := log.find(msg)
		if !ok {
			t.Errorf("no log record %q; got %v", msg, log.records())
			continue
		}
		if r.attrs["worker"] != "greeter" || r.attrs["stream"] != stream {
			t.Errorf("record %q has attrs %v, want worker=greeter stream=%s", msg, r.attrs, stream)
		}
	}
	if _, ok := log.find(""); ok {
		t.Error("an empty line was logged")
	}
}

func TestRunEnvDirAndDescriptors(t *testing.T) {
	dir := t.TempDir()
	log := newLogRecorder()
	// The watchdog's pipes (fds 3 and 4) must not leak into the command: it would keep
	// the control pipe open and hide the coordinator's death.
	spec := shSpec(t, dir, `echo "env=$FOO"; echo "dir=$(pwd -P)"; for fd in 3 4; do [ -e /proc/$$/fd/$fd ] && echo "leaked fd $fd"; done; exit 0`, log)
	spec.Env = append(spec.Env, "FOO=first", "FOO=bar")
	spec.Dir = dir
	if err := Run(context.Background(), spec, newTestLease(time.Minute)); err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(dir)
	for _, msg := range []string{"env=bar", "dir=" + real} {
		if _, ok := log.find(msg); !ok {
			t.Errorf("no log line %q; got %v", msg, log.records())
		}
	}
	for _, r := range log.records() {
		if strings.HasPrefix(r.msg, "leaked") {
			t.Error(r.msg)
		}
	}
}

func TestRunRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	lease := newTestLease(time.Minute)
	tests := []struct {
		name   string
		modify func(*Spec)
		lease  Lease
		want   error
	}{
		{"unknown program", func(s *Spec) { s.Command = "no-such-program-supervise-test" }, lease, ErrStart},
		{"missing path", func(s *Spec) { s.Command = "./no-such-file" }, lease, ErrStart},
		{"missing dir", func(s *Spec) { s.Dir = filepath.Join(dir, "nope") }, lease, ErrStart},
		{"no name", func(s *Spec) { s.Name = "" }, lease, ErrInvalidSpec},
		{"no command", func(s *Spec) { s.Command = "" }, lease, ErrInvalidSpec},
		{"negative grace", func(s *Spec) { s.StopGrace = -time.Second }, lease, ErrInvalidSpec},
		{"bad env", func(s *Spec) { s.Env = []string{"NOEQUALS"} }, lease, ErrInvalidSpec},
		{"nil lease", func(*Spec) {}, nil, ErrInvalidSpec},
		{"expired lease", func(*Spec) {}, newTestLease(-time.Second), ErrFenced},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := shSpec(t, dir, `touch "$D/started"`, newLogRecorder())
			tt.modify(&spec)
			err := Run(context.Background(), spec, tt.lease)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Run = %v, want %v", err, tt.want)
			}
			t.Logf("error: %v", err)
			if _, err := os.Stat(filepath.Join(dir, "started")); err == nil {
				t.Fatal("the command ran")
			}
		})
	}
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := Run(ctx, shSpec(t, dir, `touch "$D/started"`, newLogRecorder()), lease)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
	})
}

func TestStopSignalReachesGroup(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := newLogRecorder()
	spec := shSpec(t, dir, `trap 'echo bye > "$D/term"; exit 0' TERM; `+spawnGrandchild+writePid+`while :; do sleep 0.05; done`, log)
	done := runAsync(ctx, spec, newTestLease(time.Minute))

	cmd := trackProc(t, readPid(t, pidFile(dir, "pid"), runBound))
	grandchild := trackProc(t, readPid(t, pidFile(dir, "gpid"), runBound))
	cancelled := time.Now()
	cancel()
	err, returned := waitResult(t, done, runBound)
	if !errors.Is(err, ErrStopped) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want ErrStopped and context.Canceled", err)
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		t.Errorf("the trap exits 0, got %v", ee)
	}
	if _, err := os.Stat(filepath.Join(dir, "term")); err != nil {
		t.Errorf("the command did not see SIGTERM: %v", err)
	}
	waitGone(t, "command", cmd, time.Second)
	waitGone(t, "grandchild", grandchild, time.Second)
	t.Logf("cancel → Run returned: %v (err: %v)", returned.Sub(cancelled), err)
}

func TestStopKillsAfterStopGrace(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spec := shSpec(t, dir, `trap '' TERM; `+spawnGrandchild+writePid+`wait`, newLogRecorder())
	spec.StopGrace = 300 * time.Millisecond
	done := runAsync(ctx, spec, newTestLease(time.Minute))

	cmd := trackProc(t, readPid(t, pidFile(dir, "pid"), runBound))
	grandchild := trackProc(t, readPid(t, pidFile(dir, "gpid"), runBound))
	cancelled := time.Now()
	cancel()
	err, returned := waitResult(t, done, runBound)
	var ee *ExitError
	if !errors.Is(err, ErrStopped) || !errors.As(err, &ee) || ee.Signal != syscall.SIGKILL {
		t.Fatalf("Run = %v, want ErrStopped with the command killed by SIGKILL", err)
	}
	if took := returned.Sub(cancelled); took < spec.StopGrace {
		t.Errorf("SIGKILL came %v after the cancel, before StopGrace %v", took, spec.StopGrace)
	}
	waitGone(t, "command", cmd, time.Second)
	waitGone(t, "grandchild that ignores SIGTERM", grandchild, time.Second)
	t.Logf("cancel → Run returned: %v with StopGrace %v (err: %v)", returned.Sub(cancelled), spec.StopGrace, err)
}

func TestFenceWhenDeadlinePasses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		signal syscall.Signal
	}{
		{"stops on SIGTERM", spawnGrandchild + writePid + `wait`, syscall.SIGTERM},
		{"ignores SIGTERM", `trap '' TERM; ` + spawnGrandchild + writePid + `wait`, syscall.SIGKILL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			log := newLogRecorder()
			spec := shSpec(t, dir, tc.script, log)
			spec.FenceGrace = 300 * time.Millisecond
			lease := newTestLease(time.Second) // never extended
			deadline, _ := lease.Deadline()
			done := runAsync(context.Background(), spec, lease)

			cmd := trackProc(t, readPid(t, pidFile(dir, "pid"), runBound))
			grandchild := trackProc(t, readPid(t, pidFile(dir, "gpid"), runBound))
			gone := waitGone(t, "command", cmd, runBound)
			err, returned := waitResult(t, done, runBound)
			var ee *ExitError
			if !errors.Is(err, ErrFenced) || !errors.As(err, &ee) || ee.Signal != tc.signal {
				t.Fatalf("Run = %v, want ErrFenced with the command killed by %v", err, tc.signal)
			}
			// The watchdog's deadline may come out a little early (see monoDeadline), by the
			// time between two clock reads; far earlier would be a bug.
			if early := deadline.Sub(gone); early > 250*time.Millisecond {
				t.Errorf("the command died %v before the deadline", early)
			}
			waitGone(t, "grandchild", grandchild, time.Second)
			rec, _ := log.find("command fenced")
			t.Logf("deadline → command gone (polled): %v; watchdog measured exit %s after the deadline; Run returned after %v",
				gone.Sub(deadline), rec.attrs["exit_after_deadline"], returned.Sub(deadline))
		})
	}
}

func TestFenceCutsPlannedStopShort(t *testing.T) {
	// A planned stop with a long grace must not outlast the lease: once the deadline
	// passes, SIGKILL follows FenceGrace after it.
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spec := shSpec(t, dir, `trap '' TERM; `+writePid+`while :; do sleep 0.05; done`, newLogRecorder())
	spec.StopGrace = time.Hour
	spec.FenceGrace = 200 * time.Millisecond
	lease := newTestLease(time.Second)
	deadline, _ := lease.Deadline()
	done := runAsync(ctx, spec, lease)
	cmd := trackProc(t, readPid(t, pidFile(dir, "pid"), runBound))
	cancel()
	err, returned := waitResult(t, done, runBound)
	var ee *ExitError
	if !errors.Is(err, ErrFenced) || !errors.As(err, &ee) || ee.Signal != syscall.SIGKILL {
		t.Fatalf("Run = %v, want ErrFenced with SIGKILL", err)
	}
	waitGone(t, "command", cmd, time.Second)
	t.Logf("deadline → Run returned: %v (StopGrace %v, FenceGrace %v)", returned.Sub(deadline), spec.StopGrace, spec.FenceGrace)
}

func TestExtendedLeaseKeepsCommandRunning(t *testing.T) {
	dir := t.TempDir()
	spec := shSpec(t, dir, writePid+`while [ ! -e "$D/go" ]; do sleep 0.05; done; echo finished`, newLogRecorder())
	const ttl = 400 * time.Millisecond
	lease := newTestLease(ttl)
	first, _ := lease.Deadline()
	stop := lease.keepExtending(ttl, ttl/8)
	defer stop()
	done := runAsync(context.Background(), spec, lease)
	cmd := trackProc(t, readPid(t, pidFile(dir, "pid"), runBound))

	<-time.After(time.Until(first.Add(3 * ttl))) // the behaviour under test: time passing
	if cmd.gone() {
		t.Fatal("the command died although the lease was extended")
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err, _ := waitResult(t, done, runBound); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

func TestMonoDeadline(t *testing.T) {
	before := monoNow()
	abs := monoDeadline(time.Now().Add(time.Second))
	after := monoNow()
	if abs <= before || abs > after+int64(time.Second) {
		t.Errorf("monoDeadline(now+1s) = %d, want in (%d, %d]", abs, before, after+int64(time.Second))
	}
	if got := monoDeadline(time.Now().Add(-time.Second)); got >= monoNow() {
		t.Errorf("a past deadline converted to the future: %d", got)
	}
	if got := monoDeadline(time.Now().Add(1<<62 + 1<<61)); got <= monoNow() {
		t.Errorf("a far deadline overflowed: %d", got)
	}
}

func TestLeftoversStoppedWhenCommandExits(t *testing.T) {
	// The command's end is the worker's end: a background process in its group and one
	// that left the group with setsid both get StopSignal before Run returns.
	dir := t.TempDir()
	escapee := `trap 'echo > "$D/escapedTerm"; exit 0' TERM; echo $$ > "$D/escaped.tmp"; mv "$D/escaped.tmp" "$D/escaped"; ` +
		`while :; do sleep 0.05; done`
	script := `sleep 1000 & echo $! > "$D/inGroup"; setsid sh -c '` + strings.ReplaceAll(escapee, "'", `'\''`) + `' & ` +
		`while [ ! -s "$D/inGroup" ] || [ ! -s "$D/escaped" ]; do sleep 0.01; done; exit 7`
	spec := shSpec(t, dir, script, newLogRecorder())
	spec.StopGrace = 30 * time.Second // SIGKILL would come too late to pass
	err := Run(context.Background(), spec, newTestLease(time.Minute))
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 7 {
		t.Fatalf("Run = %v, want exit code 7", err)
	}
	for _, name := range []string{"inGroup", "escaped"} {
		p := trackProc(t, readPid(t, pidFile(dir, name), time.Second))
		if !p.gone() {
			t.Errorf("the %s background process (pid %d) outlived Run", name, p.pid)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "escapedTerm")); err != nil {
		t.Errorf("the process that left the group did not get StopSignal: %v", err)
	}
}

func TestWatchdogIgnoresSIGTERM(t *testing.T) {
	// A service manager sends SIGTERM to every process of the service; the watchdog leaves
	// the stop to the coordinator, so the command keeps its full StopGrace.
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spec := shSpec(t, dir, writePid+`while [ ! -e "$D/go" ]; do sleep 0.05; done`, newLogRecorder())
	done := runAsync(ctx, spec, newTestLease(time.Minute))
	cmd := trackProc(t, readPid(t, pidFile(dir, "pid"), runBound))
	shim := trackProc(t, cmd.parent())
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		if err := syscall.Kill(shim.pid, sig); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err, _ := waitResult(t, done, runBound); err != nil {
		t.Fatalf("Run = %v, want nil: the watchdog must not act on SIGTERM or SIGINT", err)
	}
}

func TestWatchdogSIGHUPStopsCommand(t *testing.T) {
	// SIGHUP is the watchdog's Pdeathsig: it means the coordinator is gone, even if the
	// control pipe is still open.
	dir := t.TempDir()
	spec := shSpec(t, dir, spawnGrandchild+writePid+`wait`, newLogRecorder())
	done := runAsync(context.Background(), spec, newTestLease(time.Minute))
	cmd := trackProc(t, readPid(t, pidFile(dir, "pid"), runBound))
	grandchild := trackProc(t, readPid(t, pidFile(dir, "gpid"), runBound))
	shim := trackProc(t, cmd.parent())
	if err := syscall.Kill(shim.pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	err, _ := waitResult(t, done, runBound)
	if !errors.Is(err, ErrWatchdog) {
		t.Fatalf("Run = %v, want ErrWatchdog", err)
	}
	waitGone(t, "command", cmd, time.Second)
	waitGone(t, "grandchild", grandchild, time.Second)
	t.Logf("Run: %v", err)
}

func TestRunWithWrongShim(t *testing.T) {
	// A Shim that is not a watchdog: Run must fail with a hint instead of hanging or
	// running the command unguarded.
	dir := t.TempDir()
	spec := shSpec(t, dir, `touch "$D/started"`, newLogRecorder())
	spec.Shim = "/bin/true"
	err := Run(context.Background(), spec, newTestLease(time.Minute))
	if !errors.Is(err, ErrWatchdog) || !strings.Contains(err.Error(), "MaybeRunWatchdog") {
		t.Fatalf("Run = %v, want ErrWatchdog naming MaybeRunWatchdog", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "started")); err == nil {
		t.Fatal("the command ran")
	}
	t.Logf("Run: %v", err)
}

func TestLostLeaseFencesNow(t *testing.T) {
	// The lease is lost long before its deadline (the claim was deleted): the owner pulls
	// the deadline in to now, and the watchdog kills a command that ignores SIGTERM
	// FenceGrace later, not FenceGrace after the old deadline.
	dir := t.TempDir()
	spec := shSpec(t, dir, `trap '' TERM; `+writePid+`while :; do sleep 0.05; done`, newLogRecorder())
	spec.StopGrace = time.Hour
	spec.FenceGrace = 200 * time.Millisecond
	lease := newTestLease(time.Hour)
	done := runAsync(context.Background(), spec, lease)
	cmd := trackProc(t, readPid(t, pidFile(dir, "pid"), runBound))
	lost := time.Now()
	lease.extend(0) // the deadline is now
	err, returned := waitResult(t, done, runBound)
	var ee *ExitError
	if !errors.Is(err, ErrFenced) || !errors.As(err, &ee) || ee.Signal != syscall.SIGKILL {
		t.Fatalf("Run = %v, want ErrFenced with SIGKILL", err)
	}
	waitGone(t, "command", cmd, time.Second)
	t.Logf("lease lost → Run returned: %v (FenceGrace %v)", returned.Sub(lost), spec.FenceGrace)
}

// TestExecStamp: the command gets COORD_EXEC_NS, the CLOCK_MONOTONIC reading taken just
// before its watchdog exec'd it, between the call of Run and the command's start report;
// one inherited from the coordinator's environment is replaced.
func TestExecStamp(t *testing.T) {
	t.Setenv(ExecStampEnv, "1")
	log := newLogRecorder()
	spec := shSpec(t, t.TempDir(), `echo "stamp=$`+ExecStampEnv+`"`, log)
	var started int64
	spec.OnStart = func(int) { started = monoNow() }
	before := monoNow()
	if err := Run(context.Background(), spec, newTestLease(time.Minute)); err != nil {
		t.Fatal(err)
	}
	var r logRecord
	ok := false
	var stamp int64
	for _, rec := range log.records() {
		if v, found := strings.CutPrefix(rec.msg, "stamp="); found {
			r, ok = rec, true
			stamp, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if !ok || stamp < before || stamp > started {
		t.Errorf("%s=%d (output %q): want a reading between the call of Run (%d) and the start report (%d)",
			ExecStampEnv, stamp, r.msg, before, started)
	}
}
