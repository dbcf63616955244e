package supervise

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ExecStampEnv is the environment variable in which every command gets the
// CLOCK_MONOTONIC reading, in nanoseconds, taken just before its watchdog forked and
// exec'd it: the command's start as the coordinator sees it, which a command can compare
// with its own clock readings (its exec and runtime start-up come after it).
const ExecStampEnv = "COORD_EXEC_NS"

const (
	// lingerTimeout bounds how long the watchdog waits, after SIGKILL, for the command's
	// processes to disappear (a process in uninterruptible sleep cannot be killed).
	lingerTimeout = 5 * time.Second
	// drainPoll is how often the watchdog looks for leftovers of an exited command when no
	// SIGCHLD tells it to.
	drainPoll = 50 * time.Millisecond
)

// MaybeRunWatchdog runs the watchdog and exits when this process was started as one by
// Run; otherwise it returns at once. Call it first thing in main (and in TestMain of
// tests that call Run), before flags are parsed or anything else is started:
//
//	func main() {
//		supervise.MaybeRunWatchdog()
//		...
//	}
func MaybeRunWatchdog() {
	if len(os.Args) < 2 || os.Args[1] != watchdogArg {
		return
	}
	os.Exit(runWatchdog())
}

// watchdog is the state of the shim process: one command, its process group and its
// deadline. Everything but orphan reaping and the control pipe's reading runs on one
// goroutine at a time: the main one until the command has started, then supervise.
type watchdog struct {
	status *json.Encoder
	self   int
	cfg    startMsg

	pid      int   // the command: its pid and its process group id
	deadline int64 // CLOCK_MONOTONIC ns; the largest one received

	fenceFired   bool
	pulledIn     bool // the lease was lost: no deadline extends it again
	stopSent     bool
	killAt       int64 // 0: no SIGKILL planned
	killed       bool
	leaderExited bool
	leaderExitAt int64
	parentGone   bool

	fenced, stopped, orphaned bool // what happened while the command still ran
	lateNs                    int64

	asked map[int]bool // processes outside the group that got StopSignal in drain
}

func runWatchdog() int {
	// The command's Pdeathsig fires when the thread that forked it exits, not the
	// process: fork from a thread that lives as long as the process.
	runtime.LockOSThread()
	sigs := make(chan os.Signal, 1)
	// SIGHUP is our Pdeathsig (see Run): the coordinator is gone. SIGTERM and SIGINT are
	// caught and ignored: a service manager sends them to every process of the service at
	// once, and the coordinator then stops its workers with their StopGrace; treating
	// them as the coordinator's death would cut that short. (Caught, not ignored with
	// SIG_IGN, which the command would inherit.)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	for _, fd := range []int{controlFD, statusFD} {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			fmt.Fprintf(os.Stderr, "supervise: %q is the watchdog mode of this program and is started only by supervise.Run (fd %d: %v)\n",
				watchdogArg, fd, err)
			return 2
		}
		// Inherited descriptors are not close-on-exec; the command must not get them, or
		// it would hold the control pipe open after the coordinator died.
		unix.CloseOnExec(fd)
	}
	w := &watchdog{
		status: json.NewEncoder(os.NewFile(statusFD, "supervise-status")),
		self:   os.Getpid(),
	}
	return w.run(bufio.NewReader(os.NewFile(controlFD, "supervise-control")), sigs)
}

func (w *watchdog) report(m statusMsg) {
	_ = w.status.Encode(m) // the coordinator may be gone; nothing to do about it
}

func (w *watchdog) run(ctrl *bufio.Reader, sigs <-chan os.Signal) int {
	// Orphaned descendants of the command are reparented to us instead of init, so that
	// we can reap them and kill those that left the process group. Without it (very old
	// kernels, seccomp) only the process group is cleaned up.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	// Before the start message, which a spare waits for idle: enabling a signal hands a
	// request to the runtime's signal thread and back, 3 ms and more on a busy machine,
	// that the command's start would wait for (issue 14).
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)

	// Decode a start message once while idle, so that the real one finds the decoder
	// built and its code and memory paged in.
	_ = json.Unmarshal([]byte(`{"op":"","start":{"args":[""],"env":[""]}}`), new(controlMsg))

	var first controlMsg
	if err := readMsg(ctrl, &first); err != nil {
		return 0 // the coordinator went away before it said what to run
	}
	if first.Op != opStart || first.Start == nil || first.Start.Version != protocolVersion {
		v := 0
		if first.Start != nil {
			v = first.Start.Version
		}
		w.report(statusMsg{Ev: evError, Msg: fmt.Sprintf(
			"watchdog protocol mismatch: want a %q message of version %d, got %q version %d (is Spec.Shim a different build?)",
			opStart, protocolVersion, first.Op, v)})
		return 2
	}
	w.cfg = *first.Start
	w.deadline = first.Deadline
	select {
	case sig := <-sigs:
		if sig == syscall.SIGHUP {
			return 0 // orphaned before the start
		}
	default:
	}
	if monoNow() >= w.deadline {
		w.report(statusMsg{Ev: evExit, Fenced: true, NotStarted: true})
		return 0
	}

	env := append(w.cfg.Env[:len(w.cfg.Env):len(w.cfg.Env)], fmt.Sprintf("%s=%d", ExecStampEnv, monoNow()))
	pid, err := syscall.ForkExec(w.cfg.Path, w.cfg.Args, &syscall.ProcAttr{
		Dir:   w.cfg.Dir,
		Env:   env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		w.report(statusMsg{Ev: evError, Msg: fmt.Sprintf("fork/exec %s: %v", w.cfg.Path, err)})
		return 0
	}
	w.pid = pid
	w.report(statusMsg{Ev: evStarted, Pid: pid})

	// This goroutine keeps the thread that forked the command locked, for the command's
	// Pdeathsig, until the end; the rest runs on a goroutine free to run on any thread. A
	// goroutine locked to a thread resumes only on that thread: each event, the command's
	// exit among them, would wait for a hand-over between threads.
	code := make(chan int)
	go func() { code <- w.supervise(ctrl, sigs, chld) }()
	return <-code
}

// supervise follows the command from its start to the end of its process group and
// reports how it ended.
func (w *watchdog) supervise(ctrl *bufio.Reader, sigs, chld <-chan os.Signal) int {
	msgs := make(chan controlMsg)
	go func() { // ends with the process
		defer close(msgs)
		for {
			var m controlMsg
			if err := readMsg(ctrl, &m); err != nil {
				return
			}
			msgs <- m
		}
	}()
	leaderExit := make(chan struct{})
	go w.reapOrphans(leaderExit) // ends when the command exits

	fence := time.NewTimer(until(w.deadline))
	kill := time.NewTimer(time.Hour)
	kill.Stop()
	var armedKill int64
	var poll <-chan time.Time
	var linger <-chan time.Time
	drained := false
loop:
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				msgs = nil
				w.orphan()
				break
			}
			switch m.Op {
			case opDeadline:
				if m.Deadline > w.deadline && !w.fenceFired && !w.pulledIn {
					w.deadline = m.Deadline
					fence.Reset(until(w.deadline))
				}
			case opFence:
				w.pulledIn = true
				if m.Deadline < w.deadline {
					w.deadline = m.Deadline
				}
				if w.fenceFired {
					w.beginStop(w.deadline + int64(w.cfg.FenceGrace))
				} else {
					fence.Reset(until(w.deadline))
				}
			case opStop:
				w.stop()
			}
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				w.orphan()
			}
		case <-fence.C:
			if now := monoNow(); now < w.deadline {
				fence.Reset(until(w.deadline)) // woke early; never trust the timer alone
			} else {
				w.fence(now)
			}
		case <-kill.C:
			if monoNow() < w.killAt {
				kill.Reset(until(w.killAt))
				break
			}
			w.killAll()
			linger = time.After(lingerTimeout)
		case <-leaderExit:
			leaderExit = nil
			w.leaderExited = true
			w.leaderExitAt = monoNow()
			// What is left of the group gets the usual stop signal and grace.
			w.beginStop(w.leaderExitAt + int64(w.cfg.StopGrace))
			t := time.NewTicker(drainPoll)
			defer t.Stop()
			poll = t.C
		case <-chld:
		case <-poll:
		case <-linger:
			break loop
		}
		if w.killAt != 0 && w.killAt != armedKill && !w.killed {
			armedKill = w.killAt
			kill.Reset(until(w.killAt))
		}
		if w.leaderExited && w.drain() {
			drained = true
			break
		}
	}

	exit := statusMsg{Ev: evExit, Fenced: w.fenced, Stopped: w.stopped, Orphaned: w.orphaned, Killed: w.killed, Code: -1}
	var ws unix.WaitStatus
	if w.leaderExited {
		if _, err := waitRetry(w.pid, &ws); err == nil {
			if ws.Signaled() {
				exit.Signal = int(ws.Signal())
			} else {
				exit.Code = ws.ExitStatus()
			}
		}
		if w.fenced {
			exit.ExitLateNs = w.leaderExitAt - w.deadline
		}
	} else {
		exit.Msg = "the command did not exit after SIGKILL"
	}
	if !drained {
		for _, pid := range w.children() {
			if pid == w.pid {
				continue
			}
			var ws unix.WaitStatus
			if p, _ := unix.Wait4(pid, &ws, unix.WNOHANG, nil); p != pid {
				exit.Lingering++
			}
		}
		if !w.leaderExited {
			exit.Lingering++
		}
	}
	// Our copies of the command's output pipes go first: Run reads the output to its end
	// once it has the exit report, without waiting for this process to exit.
	_ = unix.Close(1)
	_ = unix.Close(2)
	w.report(exit)
	return 0
}

// until is the time from now to the CLOCK_MONOTONIC reading at.
func until(at int64) time.Duration {
	return time.Duration(max(at-monoNow(), 0))
}

// beginStop sends the stop signal to the group, once, and plans SIGKILL for killAt or
// earlier.
func (w *watchdog) beginStop(killAt int64) {
	if !w.stopSent {
		w.stopSent = true
		w.signalGroup(syscall.Signal(w.cfg.StopSignal))
	}
	if w.killAt == 0 || killAt < w.killAt {
		w.killAt = killAt
	}
}

// stop is a planned stop requested by the coordinator.
func (w *watchdog) stop() {
	if !w.leaderExited {
		w.stopped = true
	}
	w.beginStop(monoNow() + int64(w.cfg.StopGrace))
}

// fence: the deadline passed. SIGKILL follows FenceGrace after the deadline, also when a
// planned stop with a longer grace is under way.
func (w *watchdog) fence(now int64) {
	w.fenceFired = true
	if !w.leaderExited {
		w.fenced = true
		w.lateNs = now - w.deadline
		w.report(statusMsg{Ev: evFenced, LateNs: w.lateNs})
	}
	w.beginStop(w.deadline + int64(w.cfg.FenceGrace))
}

// orphan: the coordinator is gone (control pipe EOF, Pdeathsig or a signal to us). Stop
// at once; SIGKILL after FenceGrace, or earlier if the deadline says so.
func (w *watchdog) orphan() {
	if w.parentGone {
		return
	}
	w.parentGone = true
	w.orphaned = !w.leaderExited
	w.beginStop(min(monoNow(), w.deadline) + int64(w.cfg.FenceGrace))
}

func (w *watchdog) killAll() {
	w.killed = true
	w.signalGroup(syscall.SIGKILL)
	// Processes that left the group die in drain, once the command has exited and no
	// concurrent reaping can free their pids.
}

// signalGroup signals the command's process group. The command is reaped only after the
// main loop ends, so its pid, which is the group id, cannot have been reused.
func (w *watchdog) signalGroup(sig syscall.Signal) {
	_ = unix.Kill(-w.pid, sig)
}

// drain runs after the command exited (it stays an unreaped zombie until the end). It
// reaps the command's other descendants, all of which are our children once their parents
// died, sends StopSignal to those outside the group and SIGKILL to all after killAll, and
// reports whether none are left. A scan that finds no
// child but the command is conclusive: a live descendant always has a live ancestor among
// our children, and a child stays listed (as a zombie) until we reap it.
func (w *watchdog) drain() bool {
	for {
		alive, reaped := 0, 0
		for _, pid := range w.children() {
			if pid == w.pid {
				continue
			}
			var ws unix.WaitStatus
			if p, _ := unix.Wait4(pid, &ws, unix.WNOHANG, nil); p == pid {
				reaped++
				continue
			}
			alive++
			// pid is our unreaped child, so it cannot be reused under us.
			switch {
			case w.killed:
				_ = unix.Kill(pid, syscall.SIGKILL)
			case w.stopSent && !w.asked[pid]:
				// It left the command's group and missed the group's StopSignal.
				if w.asked == nil {
					w.asked = make(map[int]bool)
				}
				w.asked[pid] = true
				_ = unix.Kill(pid, syscall.Signal(w.cfg.StopSignal))
			}
		}
		if alive > 0 {
			return false
		}
		if reaped == 0 {
			return true
		}
	}
}

// children lists our children's pids: from /proc/self/task/*/children, or from a scan of
// all /proc when the kernel does not have that file.
func (w *watchdog) children() []int {
	if pids, ok := ownChildren(); ok {
		return pids
	}
	var pids []int
	for _, c := range children(w.self) {
		pids = append(pids, c.pid)
	}
	return pids
}

// reapOrphans reaps descendants reparented to us while the command runs, and closes
// leaderExit when the command has exited, without reaping it.
func (w *watchdog) reapOrphans(leaderExit chan<- struct{}) {
	defer close(leaderExit)
	for {
		pid, err := waitExited()
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			// Not expected while the command is our unreaped child; wait for it alone.
			for {
				var info unix.Siginfo
				if err := unix.Waitid(unix.P_PID, w.pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != unix.EINTR {
					return
				}
			}
		case pid == w.pid:
			return
		default:
			var ws unix.WaitStatus
			_, _ = waitRetry(pid, &ws)
		}
	}
}

// siginfoPidOffset is where si_pid sits in a siginfo_t: after si_signo, si_errno and
// si_code, in a union aligned like a pointer.
const siginfoPidOffset = 3*4 + (unsafe.Sizeof(uintptr(0)) - 4)

// waitExited blocks until some child has exited and returns its pid without reaping it.
func waitExited() (int, error) {
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		return 0, err
	}
	return int(*(*int32)(unsafe.Add(unsafe.Pointer(&info), siginfoPidOffset))), nil
}

func waitRetry(pid int, ws *unix.WaitStatus) (int, error) {
	for {
		p, err := unix.Wait4(pid, ws, 0, nil)
		if err != unix.EINTR {
			return p, err
		}
	}
}
