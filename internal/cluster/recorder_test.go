package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
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
