package supervise

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// maxSignal is the largest signal number on Linux (SIGRTMAX).
const maxSignal = 64

// signalNames are the Linux signal names without the SIG prefix, in number order;
// aliases (IOT, CLD, POLL) come after the primary name of the same number.
var signalNames = []struct {
	name string
	sig  syscall.Signal
}{
	{"HUP", syscall.SIGHUP}, {"INT", syscall.SIGINT}, {"QUIT", syscall.SIGQUIT},
	{"ILL", syscall.SIGILL}, {"TRAP", syscall.SIGTRAP}, {"ABRT", syscall.SIGABRT},
	{"IOT", syscall.SIGIOT}, {"BUS", syscall.SIGBUS}, {"FPE", syscall.SIGFPE},
	{"KILL", syscall.SIGKILL}, {"USR1", syscall.SIGUSR1}, {"SEGV", syscall.SIGSEGV},
	{"USR2", syscall.SIGUSR2}, {"PIPE", syscall.SIGPIPE}, {"ALRM", syscall.SIGALRM},
	{"TERM", syscall.SIGTERM}, {"STKFLT", syscall.SIGSTKFLT}, {"CHLD", syscall.SIGCHLD},
	{"CLD", syscall.SIGCLD}, {"CONT", syscall.SIGCONT}, {"STOP", syscall.SIGSTOP},
	{"TSTP", syscall.SIGTSTP}, {"TTIN", syscall.SIGTTIN}, {"TTOU", syscall.SIGTTOU},
	{"URG", syscall.SIGURG}, {"XCPU", syscall.SIGXCPU}, {"XFSZ", syscall.SIGXFSZ},
	{"VTALRM", syscall.SIGVTALRM}, {"PROF", syscall.SIGPROF}, {"WINCH", syscall.SIGWINCH},
	{"IO", syscall.SIGIO}, {"POLL", syscall.SIGPOLL}, {"PWR", syscall.SIGPWR},
	{"SYS", syscall.SIGSYS},
}

// ParseSignal reads a signal written as a name with or without the SIG prefix in any case
// ("SIGTERM", "TERM", "term") or as a number from 1 to 64 ("15").
func ParseSignal(s string) (syscall.Signal, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if n, err := strconv.Atoi(t); err == nil {
		if n < 1 || n > maxSignal {
			return 0, fmt.Errorf("supervise: invalid signal %q: numbers run from 1 to %d", s, maxSignal)
		}
		return syscall.Signal(n), nil
	}
	t = strings.TrimPrefix(t, "SIG")
	for _, e := range signalNames {
		if e.name == t {
			return e.sig, nil
		}
	}
	names := make([]string, len(signalNames))
	for i, e := range signalNames {
		names[i] = e.name
	}
	return 0, fmt.Errorf("supervise: invalid signal %q: use a name such as SIGTERM, TERM or term, or a number from 1 to %d (names: %s)",
		s, maxSignal, strings.Join(names, ", "))
}

// signalName is the conventional name of sig, "SIGTERM", or "signal 40".
func signalName(sig syscall.Signal) string {
	for _, e := range signalNames {
		if e.sig == sig {
			return "SIG" + e.name
		}
	}
	return "signal " + strconv.Itoa(int(sig))
}
