package supervise

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/jetcoord/coordinator/lease"
)

// Defaults for a Spec's zero fields.
const (
	DefaultStopSignal = syscall.SIGTERM
	DefaultStopGrace  = 10 * time.Second
	// DefaultFenceGrace is the lease timing rule's default (lease.DefaultFenceGrace, 2.5s),
	// used when neither the Spec nor the Lease says otherwise.
	DefaultFenceGrace = lease.DefaultFenceGrace
	// DefaultShim is the watchdog executable: the running binary itself. The magic link
	// keeps pointing at the binary this process was started from even after an upgrade
	// replaced the file on disk, so the watchdog always speaks the same protocol.
	DefaultShim = "/proc/self/exe"
)

// Spec says how to run one command.
type Spec struct {
	// Name is the worker name, used in logs and in the watchdog's command line.
	Name string
	// Command is the program. A name without a slash is looked up in the coordinator's
	// PATH; a relative path with a slash is taken relative to Dir.
	Command string
	Args    []string
	// Env holds extra KEY=VALUE entries appended to os.Environ(); a later entry replaces
	// an earlier one with the same key.
	Env []string
	// Dir is the working directory; empty means the coordinator's.
	Dir string
	// StopSignal is sent to the command's process group to ask it to stop. Default SIGTERM.
	StopSignal syscall.Signal
	// StopGrace is the time between StopSignal and SIGKILL on a planned stop (Run's
	// context ended). Default 10s. A long grace delays shutdown and handoff.
	StopGrace time.Duration
	// FenceGrace is the same when the lease is lost (its deadline passed) or the
	// coordinator died. It must end before another node may take the worker over:
	// RenewDeadline + FenceGrace below the lease TTL, as lease.Timing.Validate checks. When
	// 0, Run takes it from the Lease if it has a FenceGrace method (the scheduler's Tick
	// does), so that grace and deadline come from the same timing; else DefaultFenceGrace.
	FenceGrace time.Duration
	// Logger receives each line the command writes to stdout or stderr, with the attributes
	// worker=Name (LogKey=Name) and stream=stdout|stderr, at level Info; supervision events are logged
	// at Debug (start, exit) and Warn (fence). Default slog.Default().
	Logger *slog.Logger
	// OnStart, if set, is called with the command's pid once it has started (the program
	// was found and exec'd); a command that cannot start never calls it.
	OnStart func(pid int)
	// LogKey is the attribute that names the command in its log lines: "worker" (default)
	// or, for a cron job's command, "job".
	LogKey string
	// Shim is the watchdog executable: a binary whose main calls MaybeRunWatchdog first
	// thing. Default DefaultShim (the running binary).
	Shim string
	// Spares, if set, has a watchdog started ahead of time for Run to take (see Spares).
	Spares *Spares
}

// Validate reports what is wrong with s, if anything, as an error wrapping ErrInvalidSpec.
// Zero fields that have a default are fine.
func (s Spec) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: worker %q: %s", ErrInvalidSpec, s.Name, fmt.Sprintf(format, args...))
	}
	switch {
	case s.Name == "":
		return fmt.Errorf("%w: Name is empty (every supervised command needs a worker name for its logs)", ErrInvalidSpec)
	case s.Command == "":
		return bad("Command is empty (set the program to run)")
	case s.StopSignal < 0 || s.StopSignal > maxSignal:
		return bad("StopSignal %d is not a signal (use 1-%d, e.g. SIGTERM)", int(s.StopSignal), maxSignal)
	case s.StopGrace < 0:
		return bad("StopGrace %v is negative (use 0 for the default %v)", s.StopGrace, DefaultStopGrace)
	case s.FenceGrace < 0:
		return bad("FenceGrace %v is negative (use 0 for the default %v)", s.FenceGrace, DefaultFenceGrace)
	}
	for _, kv := range s.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return bad("Env entry %q is not KEY=VALUE", kv)
		}
	}
	return nil
}

// withDefaults returns s with its zero fields set to their defaults.
func (s Spec) withDefaults() Spec {
	if s.StopSignal == 0 {
		s.StopSignal = DefaultStopSignal
	}
	if s.StopGrace == 0 {
		s.StopGrace = DefaultStopGrace
	}
	if s.FenceGrace == 0 {
		s.FenceGrace = DefaultFenceGrace
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.Shim == "" {
		s.Shim = DefaultShim
	}
	if s.LogKey == "" {
		s.LogKey = "worker"
	}
	return s
}

// commandPath resolves Command the way os/exec does.
func (s Spec) commandPath() (string, error) {
	if strings.Contains(s.Command, "/") {
		return s.Command, nil
	}
	return exec.LookPath(s.Command)
}

// environ is os.Environ() plus Env, a later entry replacing an earlier one with the same
// key (os/exec does the same; the watchdog uses the raw fork/exec, which would not).
func (s Spec) environ() []string {
	all := append(os.Environ(), s.Env...)
	seen := make(map[string]bool, len(all))
	out := make([]string, 0, len(all))
	for i := len(all) - 1; i >= 0; i-- {
		k, _, _ := strings.Cut(all[i], "=")
		if k == ExecStampEnv {
			continue // the watchdog sets it
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, all[i])
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}
