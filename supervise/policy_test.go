package supervise

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseSignal(t *testing.T) {
	tests := []struct {
		in   string
		want syscall.Signal
		err  string
	}{
		{in: "SIGTERM", want: syscall.SIGTERM},
		{in: "TERM", want: syscall.SIGTERM},
		{in: "term", want: syscall.SIGTERM},
		{in: "sigterm", want: syscall.SIGTERM},
		{in: " 15 ", want: syscall.SIGTERM},
		{in: "SIGINT", want: syscall.SIGINT},
		{in: "hup", want: syscall.SIGHUP},
		{in: "9", want: syscall.SIGKILL},
		{in: "USR2", want: syscall.SIGUSR2},
		{in: "SIGQUIT", want: syscall.SIGQUIT},
		{in: "iot", want: syscall.SIGABRT},
		{in: "64", want: syscall.Signal(64)},
		{in: "", err: `invalid signal "": use a name such as SIGTERM`},
		{in: "TERMM", err: `invalid signal "TERMM": use a name such as SIGTERM, TERM or term, or a number from 1 to 64 (names: HUP, INT,`},
		{in: "SIG", err: `invalid signal "SIG"`},
		{in: "0", err: `invalid signal "0": numbers run from 1 to 64`},
		{in: "65", err: `invalid signal "65": numbers run from 1 to 64`},
		{in: "-15", err: `invalid signal "-15": numbers run from 1 to 64`},
	}
	for _, tt := range tests {
		got, err := ParseSignal(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseSignal(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestSignalName(t *testing.T) {
	for sig, want := range map[syscall.Signal]string{
		syscall.SIGTERM: "SIGTERM", syscall.SIGKILL: "SIGKILL", syscall.SIGABRT: "SIGABRT", 40: "signal 40",
	} {
		if got := signalName(sig); got != want {
			t.Errorf("signalName(%d) = %q, want %q", int(sig), got, want)
		}
	}
}

func TestParseRestartPolicy(t *testing.T) {
	tests := []struct {
		in   string
		want RestartPolicy
		ok   bool
	}{
		{"always", RestartAlways, true},
		{"on-failure", RestartOnFailure, true},
		{"never", RestartNever, true},
		{" Always ", RestartAlways, true},
		{"ON-FAILURE", RestartOnFailure, true},
		{"", "", false},
		{"on_failure", "", false},
		{"sometimes", "", false},
	}
	for _, tt := range tests {
		got, err := ParseRestartPolicy(tt.in)
		if !tt.ok {
			want := fmt.Sprintf("supervise: invalid restart policy %q (valid: always, on-failure, never)", tt.in)
			if err == nil || err.Error() != want {
				t.Errorf("ParseRestartPolicy(%q) = %q, %v; want error %q", tt.in, got, err, want)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseRestartPolicy(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestShouldRestart(t *testing.T) {
	exit := &ExitError{Worker: "w", Code: 1}
	stopped := newEndError(ErrStopped, "w", context.Canceled, exit)
	fenced := newEndError(ErrFenced, "w", nil, nil)
	startErr := fmt.Errorf("%w: not found", ErrStart)
	invalid := fmt.Errorf("%w: no name", ErrInvalidSpec)
	tests := []struct {
		policy RestartPolicy
		err    error
		want   bool
	}{
		{RestartAlways, nil, true},
		{RestartAlways, exit, true},
		{RestartAlways, startErr, true},
		{RestartAlways, stopped, false},
		{RestartAlways, fenced, false},
		{RestartAlways, invalid, false},
		{RestartOnFailure, nil, false},
		{RestartOnFailure, exit, true},
		{RestartOnFailure, startErr, true},
		{RestartOnFailure, stopped, false},
		{RestartOnFailure, fenced, false},
		{RestartNever, nil, false},
		{RestartNever, exit, false},
		{RestartPolicy("bogus"), exit, false},
	}
	for _, tt := range tests {
		if got := tt.policy.ShouldRestart(tt.err); got != tt.want {
			t.Errorf("%q.ShouldRestart(%v) = %v, want %v", tt.policy, tt.err, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		b    Backoff
		runs []time.Duration // how long each run lasted
		want []time.Duration // delay after each
	}{
		{
			name: "defaults double up to the ceiling",
			runs: []time.Duration{0, 0, 0, 0, 0, 0, 0, 0, 0},
			want: []time.Duration{500 * ms, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
				16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second},
		},
		{
			name: "a long run resets",
			runs: []time.Duration{time.Second, time.Second, 59 * time.Second, 60 * time.Second, time.Second},
			want: []time.Duration{500 * ms, time.Second, 2 * time.Second, 500 * ms, time.Second},
		},
		{
			name: "custom fields",
			b:    Backoff{Initial: 100 * ms, Max: 250 * ms, Multiplier: 3, ResetAfter: 10 * time.Second},
			runs: []time.Duration{0, 0, 0, 10 * time.Second},
			want: []time.Duration{100 * ms, 250 * ms, 250 * ms, 100 * ms},
		},
		{
			name: "initial above max is capped",
			b:    Backoff{Initial: time.Minute},
			runs: []time.Duration{0, 0},
			want: []time.Duration{30 * time.Second, 30 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.b
			for i, ran := range tt.runs {
				if got := b.Next(ran); got != tt.want[i] {
					t.Errorf("Next #%d (ran %v) = %v, want %v", i, ran, got, tt.want[i])
				}
			}
			b.Reset()
			if got, want := b.Next(0), tt.want[0]; got != want {
				t.Errorf("Next after Reset = %v, want %v", got, want)
			}
		})
	}
}

// The documented defaults, pinned so that docs and code cannot drift.
func TestDefaults(t *testing.T) {
	s := Spec{Name: "w", Command: "true"}.withDefaults()
	if s.StopSignal != syscall.SIGTERM || s.StopGrace != 10*time.Second || s.FenceGrace != 2500*time.Millisecond ||
		s.Shim != "/proc/self/exe" || s.Logger == nil {
		t.Errorf("defaults = %+v", s)
	}
	if DefaultBackoffInitial != 500*time.Millisecond || DefaultBackoffMax != 30*time.Second ||
		DefaultBackoffMultiplier != 2 || DefaultBackoffResetAfter != time.Minute {
		t.Error("Backoff defaults drifted from the docs")
	}
	if err := (Spec{Name: "w", Command: "true", StopSignal: 99}).Validate(); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("StopSignal 99: Validate = %v", err)
	}
}

func TestExitErrorMessages(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{&ExitError{Worker: "w", Code: 3}, `supervise: worker "w": command exited with code 3`},
		{&ExitError{Worker: "w", Code: -1, Signal: syscall.SIGKILL}, `supervise: worker "w": command killed by SIGKILL`},
		{newEndError(ErrStopped, "w", context.Canceled, nil),
			`supervise: command stopped on request: worker "w" (context canceled): command exited with code 0`},
		{newEndError(ErrFenced, "w", nil, &ExitError{Worker: "w", Code: -1, Signal: syscall.SIGTERM}),
			`supervise: lease deadline passed without extension, command fenced: worker "w": command killed by SIGTERM`},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}
