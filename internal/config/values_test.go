package config

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestValidName(t *testing.T) {
	for _, c := range []struct {
		name, want string // want "" = valid
	}{
		{"billing", ""},
		{"billing.eu-west_1", ""},
		{"A", ""},
		{strings.Repeat("x", 128), ""},
		{"", `invalid name "": must not be empty`},
		{"a b", `invalid name "a b": ' ' (space) is not allowed (use letters, digits, '-', '_' and '.')`},
		{"a\tb", `'\t' (tab) is not allowed`},
		{"a/b", `'/' is not allowed`},
		{"a>", `'>' (a NATS wildcard) is not allowed`},
		{"café", `'é' (U+00E9) is not allowed`},
		{"\xff", "not valid UTF-8"},
		{".a", "must not start with '.'"},
		{"a.", "must not end with '.'"},
		{"a..b", `must not contain ".."`},
		{strings.Repeat("x", 129), "is 129 characters long, the limit is 128"},
	} {
		err := ValidName(c.name)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("ValidName(%q) = %v, want nil", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("ValidName(%q) = %v, want %q", c.name, err, c.want)
		case c.want != "" && !errors.Is(err, ErrInvalidName):
			t.Errorf("ValidName(%q): errors.Is(err, ErrInvalidName) = false", c.name)
		}
	}
}

func TestParseSignal(t *testing.T) {
	for _, c := range []struct {
		in   string
		want syscall.Signal
	}{
		{"SIGTERM", syscall.SIGTERM}, {"TERM", syscall.SIGTERM}, {"term", syscall.SIGTERM},
		{"15", syscall.SIGTERM}, {" sigint ", syscall.SIGINT}, {"9", syscall.SIGKILL},
		{"Hup", syscall.SIGHUP}, {"QUIT", syscall.SIGQUIT},
	} {
		got, err := ParseSignal(c.in)
		if err != nil || syscall.Signal(got) != c.want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "TERMINATE", "SIG", "999", "-1"} {
		if _, err := ParseSignal(in); err == nil || !strings.Contains(err.Error(), "use one of SIGHUP") {
			t.Errorf("ParseSignal(%q) = %v, want an error listing the signals", in, err)
		}
	}
	if got := Signal(syscall.SIGINT).String(); got != "SIGINT" {
		t.Errorf("String() = %q", got)
	}
	if got := Signal(0).String(); got != "SIGTERM" {
		t.Errorf("zero String() = %q, want the default SIGTERM", got)
	}
}

func TestDurationText(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"15s", 15 * time.Second, ""},
		{"1m30s", 90 * time.Second, ""},
		{" 500ms ", 500 * time.Millisecond, ""},
		{"0", 0, ""},
		{"", 0, ""},
		{"15", 0, `invalid duration "15": missing unit — add a unit: 15s`},
		{"15 parsecs", 0, `invalid duration "15 parsecs": unknown unit " parsecs" — write a number with a unit`},
		{"2d", 0, "24h"},
		{"soon", 0, `invalid duration "soon" — write a number with a unit`},
	} {
		var d Duration
		err := d.UnmarshalText([]byte(c.in))
		switch {
		case c.err == "" && (err != nil || time.Duration(d) != c.want):
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", c.in, d, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("UnmarshalText(%q) error = %v, want %q", c.in, err, c.err)
		}
	}
	if b, _ := Duration(90 * time.Second).MarshalText(); string(b) != "1m30s" {
		t.Errorf("MarshalText = %q", b)
	}
}

func TestCommandForms(t *testing.T) {
	f := mustParse(t, `
workers:
  - name: list
    command: ["/usr/bin/billing", "--flag", ""]
  - name: shell
    command: echo "$COORD_WORKER" | tee /tmp/x
  - name: numbers
    command: [sleep, 10]
`, nil)
	for i, want := range []Command{
		{"/usr/bin/billing", "--flag", ""},
		{"/bin/sh", "-c", `echo "$COORD_WORKER" | tee /tmp/x`},
		{"sleep", "10"},
	} {
		if got := f.Workers[i].Command; strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Errorf("workers[%d].Command = %q, want %q", i, got, want)
		}
	}
}

// A File built in code validates too; zero values count as defaults, and problems have no
// position.
func TestValidateInCode(t *testing.T) {
	f := Default()
	f.Workers = []Worker{{Name: "w", Command: Command{"/bin/true"}}}
	f.Jobs = []Job{{Name: "j", Schedule: "@every 10s", Command: Command{"/bin/true"}}}
	if err := f.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if f.Workers[0].Restart != "" {
		t.Error("Validate changed the File")
	}
	f.Workers = append(f.Workers, Worker{Name: "j"})
	f.Timing.RenewDeadline = Duration(20 * time.Second)
	ps := asProblems(t, f.Validate())
	want := []string{
		"timing.renew_deadline (20s) must be shorter than timing.ttl (15s)",
		`workers[1] "j": command is missing`,
		`jobs[0] "j": name "j" is already used by workers[1] — names`,
	}
	if len(ps) != len(want) {
		t.Fatalf("got:%s", dump(ps))
	}
	for i, w := range want {
		if ps[i].File != "" || ps[i].Line != 0 || !strings.HasPrefix(ps[i].Msg, w) {
			t.Errorf("problem %d = %+v, want %q without position", i, ps[i], w)
		}
	}
}
