package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// startRecorder runs the recorder as a supervised command would.
func startRecorder(t *testing.T, dir, worker, node, token string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bins.Recorder, dir)
	cmd.Env = append(os.Environ(), "COORD_WORKER="+worker, "COORD_NODE="+node, "COORD_TOKEN="+token)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func waitRuns(t *testing.T, dir string, cond func([]Run) bool) []Run {
	t.Helper()
	var runs []Run
	err := WaitFor(10*time.Second, "runs", func() bool {
		var err error
		runs, err = ReadRuns(filepath.Join(dir, RunsFile))
		if err != nil {
			t.Fatal(err)
		}
		return cond(runs)
	})
	if err != nil {
		t.Fatalf("%v; runs: %v", err, runs)
	}
	return runs
}

func TestRecorder(t *testing.T) {
	dir := t.TempDir()
	first := startRecorder(t, dir, "w", "a", "7")
	waitRuns(t, dir, func(rs []Run) bool { return len(rs) == 1 && rs[0].LastBeat != 0 })

	// A second copy of the same worker finds the lock held and says so.
	second := startRecorder(t, dir, "w", "b", "8")
	err := second.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("second copy: %v, want exit status 3", err)
	}
	// Another worker is independent.
	other := startRecorder(t, dir, "v", "b", "1")
	waitRuns(t, dir, func(rs []Run) bool { return len(RunsOf(rs, "v")) == 1 })

	if err := first.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("SIGTERM: %v, want exit 0", err)
	}
	if err := other.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = other.Wait()

	runs, err := ReadRuns(filepath.Join(dir, RunsFile))
	if err != nil {
		t.Fatal(err)
	}
	w := RunsOf(runs, "w")
	if len(w) != 1 || !w[0].Stopped || w[0].Token != 7 || w[0].PID != first.Process.Pid {
		t.Errorf("runs of w: %v", w)
	}
	if v := RunsOf(runs, "v"); len(v) != 1 || v[0].Stopped {
		t.Errorf("runs of v (SIGKILLed): %v", v)
	}
	vs := CheckRuns(runs)
	if len(vs) != 1 || vs[0].Kind != ViolationLock || vs[0].A.Node != "b" {
		t.Errorf("violations: %v, want one lock violation by b", vs)
	}

	// The lock went with the first copy: a new one starts.
	third := startRecorder(t, dir, "w", "c", "9")
	waitRuns(t, dir, func(rs []Run) bool { return len(RunsOf(rs, "w")) == 2 })
	_ = third.Process.Signal(syscall.SIGTERM)
	_ = third.Wait()
}

// TestRecorderStampsMain: a run carries the stamp of the copy's first code, taken before
// its set-up (opening runs.log, taking the lock), so that a handoff's "new command's start"
// does not include the recorder's own set-up (issue 14).
func TestRecorderStampsMain(t *testing.T) {
	dir := t.TempDir()
	before := MonoNow()
	t.Setenv("COORD_EXEC_NS", strconv.FormatInt(int64(before), 10)) // as a watchdog sets it
	cmd := startRecorder(t, dir, "w", "a", "1")
	runs := waitRuns(t, dir, func(rs []Run) bool { return len(rs) == 1 })
	r := runs[0]
	if r.Main == 0 || r.Main < before || r.Main > r.Start {
		t.Errorf("main stamp %d: want one between the exec (after %d) and the start stamp %d", r.Main, before, r.Start)
	}
	if r.Exec != before {
		t.Errorf("exec stamp %d, want COORD_EXEC_NS %d", r.Exec, before)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
}

func TestRecorderNeedsEnvironment(t *testing.T) {
	cmd := exec.Command(bins.Recorder, t.TempDir())
	cmd.Env = []string{"COORD_WORKER=w"}
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("recorder ran without COORD_NODE and COORD_TOKEN: %s", out)
	}
}

func TestRecorderIgnoringStop(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(bins.Recorder, dir)
	cmd.Env = append(os.Environ(), "COORD_WORKER=w", "COORD_NODE=a", "COORD_TOKEN=1", "RECORDER_IGNORE_STOP=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitRuns(t, dir, func(rs []Run) bool { return len(rs) == 1 && rs[0].LastBeat != 0 })
	termed := MonoNow()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	beats := waitRuns(t, dir, func(rs []Run) bool { return len(rs) == 1 && rs[0].LastBeat > termed.Add(2*BeatInterval) })
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if beats[0].Stopped {
		t.Errorf("a recorder that ignores SIGTERM wrote a stop line: %v", beats[0])
	}
}

// TestRecorderRunsOnOverlap: with RECORDER_ON_OVERLAP=run a second copy says OVERLAP and
// runs anyway, so that the checker sees how long both ran, and on which nodes.
func TestRecorderRunsOnOverlap(t *testing.T) {
	dir := t.TempDir()
	start := func(node, token string) *exec.Cmd {
		cmd := exec.Command(bins.Recorder, dir)
		cmd.Env = append(os.Environ(), "COORD_WORKER=w", "COORD_NODE="+node, "COORD_TOKEN="+token, "RECORDER_ON_OVERLAP=run")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	first := start("a", "1")
	waitRuns(t, dir, func(rs []Run) bool { return len(rs) == 1 && rs[0].LastBeat != 0 })
	second := start("a", "2")
	waitRuns(t, dir, func(rs []Run) bool {
		w := RunsOf(rs, "w")
		return len(w) == 2 && w[1].LastBeat != 0
	})
	_ = first.Process.Kill() // SIGKILL: the first run ends at its last beat
	_ = first.Wait()
	_ = second.Process.Signal(syscall.SIGTERM)
	if err := second.Wait(); err != nil {
		t.Fatalf("second copy: %v, want exit 0", err)
	}
	runs, err := ReadRuns(filepath.Join(dir, RunsFile))
	if err != nil {
		t.Fatal(err)
	}
	if w := RunsOf(runs, "w"); len(w) != 2 || !w[1].Unlocked || w[0].Unlocked || !w[1].Stopped {
		t.Fatalf("runs of w: %v", w)
	}
	var overlap, lock int
	for _, v := range CheckRuns(runs) {
		if !v.SameNode() {
			t.Errorf("%v: not seen as on one node", v)
		}
		switch v.Kind {
		case ViolationOverlap:
			overlap++
			if v.Together() < BeatInterval {
				t.Errorf("%v: together %v, want at least a beat", v, v.Together())
			}
		case ViolationLock:
			lock++
			if v.B.PID != first.Process.Pid {
				t.Errorf("%v: holder pid %d, want %d", v, v.B.PID, first.Process.Pid)
			}
		}
	}
	if overlap != 1 || lock != 1 {
		t.Errorf("%d overlap and %d lock violations, want 1 and 1: %v", overlap, lock, CheckRuns(runs))
	}
}

// TestRecorderStopDelay: RECORDER_STOP_DELAY keeps a stopped copy beating for the delay,
// like a command that traps SIGTERM and takes its time.
func TestRecorderStopDelay(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(bins.Recorder, dir)
	cmd.Env = append(os.Environ(), "COORD_WORKER=w", "COORD_NODE=a", "COORD_TOKEN=1", "RECORDER_STOP_DELAY=500ms")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitRuns(t, dir, func(rs []Run) bool { return len(rs) == 1 && rs[0].LastBeat != 0 })
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Process.Signal(syscall.SIGTERM) // a second signal does not cut the delay short
	if err := cmd.Wait(); err != nil {
		t.Fatalf("recorder: %v, want exit 0", err)
	}
	runs, err := ReadRuns(filepath.Join(dir, RunsFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || !runs[0].Stopped || runs[0].Signalled == 0 || runs[0].StopTook() < 500*time.Millisecond {
		t.Errorf("runs %v, stop took %v; want one stopped run that took at least 500ms", runs, runs[0].StopTook())
	}
}
