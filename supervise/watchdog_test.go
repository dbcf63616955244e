package supervise

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeCoordinator is the test binary re-executed as a coordinator that runs one script
// under Run (see runFakeCoordinator).
type fakeCoordinator struct {
	cmd    *exec.Cmd
	proc   proc
	mu     sync.Mutex // guards out and errs while the process runs
	out    bytes.Buffer
	errs   bytes.Buffer
	exited chan struct{}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func startFakeCoordinator(t *testing.T, dir, script string, ttl, fenceGrace time.Duration) *fakeCoordinator {
	t.Helper()
	f := &fakeCoordinator{exited: make(chan struct{})}
	f.cmd = exec.Command(os.Args[0])
	f.cmd.Env = append(os.Environ(),
		helperEnv+"=coordinator",
		helperDirEnv+"="+dir,
		helperScriptEnv+"="+script,
		helperTTLEnv+"="+ttl.String(),
		helperGraceEnv+"="+fenceGrace.String(),
	)
	f.cmd.Stdout = lockedWriter{&f.mu, &f.out}
	f.cmd.Stderr = lockedWriter{&f.mu, &f.errs}
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.proc = trackProc(t, f.cmd.Process.Pid)
	go func() {
		_ = f.cmd.Wait()
		close(f.exited)
	}()
	t.Cleanup(func() {
		_ = f.cmd.Process.Kill() // also works on a stopped process
		<-f.exited
		if t.Failed() {
			t.Logf("fake coordinator stdout:\n%s\nstderr:\n%s", f.stdout(), f.stderr())
		}
	})
	return f
}

func (f *fakeCoordinator) stdout() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out.String()
}

func (f *fakeCoordinator) stderr() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errs.String()
}

func TestCoordinatorKilled(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
	}{
		{"command stops on SIGTERM", spawnGrandchild + writePid + `wait`},
		{"command ignores SIGTERM", `trap '' TERM; ` + spawnGrandchild + writePid + `wait`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			const fenceGrace = 500 * time.Millisecond
			f := startFakeCoordinator(t, dir, tc.script, 30*time.Second, fenceGrace)
			cmd := trackProc(t, readPid(t, pidFile(dir, "pid"), runBound))
			grandchild := trackProc(t, readPid(t, pidFile(dir, "gpid"), runBound))
			shim := trackProc(t, cmd.parent())
			if shim.pid == f.proc.pid || shim.gone() {
				t.Fatalf("the command's parent %d is not a live watchdog", shim.pid)
			}

			killed := time.Now()
			if err := unix.Kill(f.proc.pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			// The lease is good for 30s more: only the coordinator's death stops the command.
			const bound = 10 * time.Second
			cmdGone := waitGone(t, "command", cmd, bound)
			waitGone(t, "grandchild", grandchild, bound)
			shimGone := waitGone(t, "watchdog", shim, bound)
			t.Logf("coordinator SIGKILL → command gone: %v, watchdog gone: %v (FenceGrace %v)",
				cmdGone.Sub(killed), shimGone.Sub(killed), fenceGrace)
		})
	}
}

func TestCoordinatorStopped(t *testing.T) {
	// The pause problem: a SIGSTOPped coordinator cannot renew and another node takes the
	// worker over after one TTL. The watchdog must stop the command at the deadline on its
	// own.
	dir := t.TempDir()
	const ttl = time.Second
	f := startFakeCoordinator(t, dir, spawnGrandchild+writePid+`wait`, ttl, 300*time.Millisecond)
	cmd := trackProc(t, readPid(t, pidFile(dir, "pid"), runBound))
	grandchild := trackProc(t, readPid(t, pidFile(dir, "gpid"), runBound))
	shim := trackProc(t, cmd.parent())

	stopped := time.Now()
	if err := unix.Kill(f.proc.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Kill(f.proc.pid, syscall.SIGCONT) })
	const bound = 10 * time.Second
	cmdGone := waitGone(t, "command", cmd, bound)
	waitGone(t, "grandchild", grandchild, bound)
	shimGone := waitGone(t, "watchdog", shim, bound)
	if !f.proc.stopped() {
		t.Fatal("the fake coordinator is not stopped any more; the test proves nothing")
	}
	t.Logf("coordinator SIGSTOP → command gone: %v, watchdog gone: %v (TTL %v: the last deadline was at most that after the stop)",
		cmdGone.Sub(stopped), shimGone.Sub(stopped), ttl)

	if err := unix.Kill(f.proc.pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.exited:
	case <-time.After(runBound):
		t.Fatal("the fake coordinator did not finish after SIGCONT")
	}
	if out := f.stdout(); !strings.Contains(out, "fenced") {
		t.Fatalf("Run in the fake coordinator did not return ErrFenced: %q", out)
	}
	for _, line := range strings.Split(f.stderr(), "\n") {
		if strings.Contains(line, "fence") || strings.Contains(line, "deadline") {
			t.Logf("fake coordinator log: %s", line)
		}
	}
}
