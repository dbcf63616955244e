package supervise

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Lease is what supervise needs of an ownership lease.
type Lease interface {
	// Token returns the fencing token of the ownership term (logged at start).
	Token() uint64
	// Deadline returns the current renew deadline (a time.Time carrying a monotonic
	// reading, from time.Now().Add(...)) and a channel that is closed when the deadline
	// next changes; a nil channel means it never changes. A deadline earlier than the
	// last one means the lease was lost: the watchdog fences at it (StopSignal, SIGKILL
	// FenceGrace later) and ignores every later deadline. Cancel Run's context as well to
	// say it is a stop.
	Deadline() (time.Time, <-chan struct{})
}

const (
	// outputDrain bounds how long Run keeps reading the command's output after the
	// watchdog exited; only processes that could not be killed keep the pipes open longer.
	outputDrain = 2 * time.Second
	// startTimeout bounds the wait for the watchdog's first report. Only a Shim that is
	// not a watchdog at all (its main does not call MaybeRunWatchdog) stays silent.
	startTimeout = 30 * time.Second
	// backstopSlack is added to StopGrace and lingerTimeout before Run kills a watchdog
	// that does not finish a planned stop. It never fires unless the watchdog is broken.
	backstopSlack = 5 * time.Second
)

// Run starts the command under a watchdog process and waits for it.
//
// It returns nil when the command exits with status 0 and an *ExitError otherwise. The
// command's end is the worker's end: processes it leaves behind, in its process group or
// not, get StopSignal and SIGKILL StopGrace later, and Run returns when they are gone. When
// ctx ends, Run asks the watchdog to stop the command (StopSignal to its process group,
// SIGKILL to the group StopGrace later) and returns an error wrapping both ErrStopped and
// ctx.Err() (and the *ExitError, if the command did not exit 0). While the command runs
// and while it stops, Run forwards every new lease deadline to the watchdog; when a
// deadline passes without an extension, the watchdog stops the command on its own
// (SIGKILL FenceGrace after the deadline) and Run returns an error wrapping ErrFenced.
// The command never starts unless the deadline is still ahead. Other errors wrap
// ErrInvalidSpec, ErrStart or ErrWatchdog. With spec.Spares set, Run returns once the
// command's end is reported and its output read, and the watchdog process itself is
// reaped in the background (Spares.Close waits for it).
func Run(ctx context.Context, spec Spec, lease Lease) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	if lease == nil {
		return fmt.Errorf("%w: worker %q: nil Lease", ErrInvalidSpec, spec.Name)
	}
	if g, ok := lease.(interface{ FenceGrace() time.Duration }); ok && spec.FenceGrace == 0 && g.FenceGrace() > 0 {
		spec.FenceGrace = g.FenceGrace()
	}
	spec = spec.withDefaults()
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, _ := lease.Deadline(); !d.After(time.Now()) {
		return fmt.Errorf("%w: worker %q not started: the lease deadline had already passed", ErrFenced, spec.Name)
	}
	path, err := spec.commandPath()
	if err != nil {
		return fmt.Errorf("%w: worker %q: %w", ErrStart, spec.Name, err)
	}
	if spec.Dir != "" {
		if fi, err := os.Stat(spec.Dir); err != nil {
			return fmt.Errorf("%w: worker %q: working directory: %w", ErrStart, spec.Name, err)
		} else if !fi.IsDir() {
			return fmt.Errorf("%w: worker %q: working directory %q is not a directory", ErrStart, spec.Name, spec.Dir)
		}
	}
	r := &run{spec: spec, lease: lease, log: spec.Logger.With(spec.LogKey, spec.Name)}
	start := startMsg{
		Version:    protocolVersion,
		Name:       spec.Name,
		Path:       path,
		Args:       append([]string{spec.Command}, spec.Args...),
		Env:        spec.environ(),
		Dir:        spec.Dir,
		StopSignal: int(spec.StopSignal),
		StopGrace:  int64(spec.StopGrace),
		FenceGrace: int64(spec.FenceGrace),
	}
	if err := r.start(start); err != nil {
		return err
	}
	return r.wait(ctx)
}

// run is one Run call: the watchdog process, the pipes to it and the goroutines that
// serve them.
type run struct {
	spec  Spec
	lease Lease
	log   *slog.Logger

	cmd            *exec.Cmd
	ctrl           *os.File // write end of the control pipe
	status         *os.File // read end of the status pipe
	stdout, stderr *os.File // read ends of the command's output

	wg         sync.WaitGroup
	threadDone chan struct{} // releases the thread the watchdog was forked from
	threadHeld chan struct{} // closed when that thread's goroutine has returned
	stopReq    chan struct{} // closed to ask for a planned stop
	done       chan struct{} // closed when the watchdog has exited

	output sync.WaitGroup // the two output readers
}

func (r *run) goFunc(f func()) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f()
	}()
}

// start launches the watchdog, or takes a spare one, and the goroutines that talk to it.
func (r *run) start(start startMsg) error {
	if sp := r.spec.Spares.take(r.spec.Shim); sp != nil {
		sp.spec, sp.lease, sp.log = r.spec, r.lease, r.log
		*r = run{spec: sp.spec, lease: sp.lease, log: sp.log, cmd: sp.cmd, ctrl: sp.ctrl, status: sp.status,
			stdout: sp.stdout, stderr: sp.stderr, threadDone: sp.threadDone}
		r.wg.Add(1) // the spare's thread goroutine, which now waits for this run's threadDone
		go func() { defer r.wg.Done(); <-sp.threadHeld }()
		r.begin(start)
		return nil
	}
	if err := r.launch(r.spec.Name); err != nil {
		return err
	}
	r.begin(start)
	return nil
}

// launch starts a watchdog (label names it in ps) that waits for its start message.
func (r *run) launch(label string) error {
	var pipes [4][2]*os.File // control, status, stdout, stderr: {read, write}
	closeAll := func() {
		for _, p := range pipes {
			for _, f := range p {
				if f != nil {
					f.Close()
				}
			}
		}
	}
	for i := range pipes {
		rf, wf, err := os.Pipe()
		if err != nil {
			closeAll()
			return fmt.Errorf("%w: worker %q: pipe: %w", ErrWatchdog, r.spec.Name, err)
		}
		pipes[i] = [2]*os.File{rf, wf}
	}
	r.cmd = &exec.Cmd{
		Path:       r.spec.Shim,
		Args:       []string{os.Args[0], watchdogArg, label},
		Stdout:     pipes[2][1],
		Stderr:     pipes[3][1],
		ExtraFiles: []*os.File{pipes[0][0], pipes[1][1]}, // fds 3 and 4
		SysProcAttr: &syscall.SysProcAttr{
			// Its own group: a SIGSTOP or ^Z aimed at the coordinator's group must not
			// freeze the watchdog too.
			Setpgid: true,
			// Backup for the control pipe's EOF. SIGHUP, not SIGKILL: the watchdog must
			// live to stop the command's whole group.
			Pdeathsig: syscall.SIGHUP,
		},
	}
	err := r.startLocked()
	pipes[0][0].Close()
	pipes[1][1].Close()
	pipes[2][1].Close()
	pipes[3][1].Close()
	r.ctrl, r.status, r.stdout, r.stderr = pipes[0][1], pipes[1][0], pipes[2][0], pipes[3][0]
	if err != nil {
		r.ctrl.Close()
		r.status.Close()
		r.stdout.Close()
		r.stderr.Close()
		r.wg.Wait()
		return fmt.Errorf("%w: worker %q: start %s: %w", ErrWatchdog, r.spec.Name, r.spec.Shim, err)
	}
	return nil
}

// begin sends a launched watchdog its start message and starts the goroutines that talk
// to it.
func (r *run) begin(start startMsg) {
	r.stopReq = make(chan struct{})
	r.done = make(chan struct{})
	// The start message goes out first, before any goroutine of this run has to be
	// scheduled: the command's start waits for it.
	enc := json.NewEncoder(r.ctrl)
	d, changed := r.lease.Deadline()
	sent := enc.Encode(controlMsg{Op: opStart, Deadline: monoDeadline(d), Start: &start}) == nil
	r.output.Add(2)
	r.goFunc(func() { defer r.output.Done(); logLines(r.stdout, r.log, "stdout") })
	r.goFunc(func() { defer r.output.Done(); logLines(r.stderr, r.log, "stderr") })
	if sent { // else the watchdog is gone: wait reports it
		r.goFunc(func() { r.forward(enc, d, changed) })
	}
}

// startLocked starts the watchdog from a goroutine locked to its OS thread and keeps the
// thread until the watchdog has exited: Pdeathsig fires when the forking thread exits,
// and the Go runtime may end a thread while the process lives on.
func (r *run) startLocked() error {
	r.threadDone = make(chan struct{})
	r.threadHeld = make(chan struct{})
	errc := make(chan error, 1)
	r.goFunc(func() {
		defer close(r.threadHeld)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := r.cmd.Start()
		errc <- err
		if err == nil {
			<-r.threadDone
		}
	})
	return <-errc
}

// forward is the only writer of the control pipe after the start message (begin): every
// new deadline after d and the stop request. A write blocks only while the watchdog does
// not read; closing the pipe at the end unblocks it.
func (r *run) forward(enc *json.Encoder, d time.Time, changed <-chan struct{}) {
	stop := r.stopReq
	for {
		select {
		case <-changed:
			// Compared here, on Go's monotonic readings, not in the watchdog: two
			// conversions of one deadline to CLOCK_MONOTONIC can differ by a pause.
			prev := d
			d, changed = r.lease.Deadline()
			op := opDeadline
			if d.Before(prev) {
				op = opFence
			}
			if enc.Encode(controlMsg{Op: op, Deadline: monoDeadline(d)}) != nil {
				return
			}
		case <-stop:
			stop = nil
			if enc.Encode(controlMsg{Op: opStop}) != nil {
				return
			}
		case <-r.done:
			return
		}
	}
}

// finish waits for the watchdog to exit, then for the goroutines that served it, and
// closes the pipes. It returns how the watchdog ended, for errors.
func (r *run) finish() string {
	shimState := "state unknown"
	// A watchdog that reported its command's end or closed its status pipe has nothing
	// left to do but exit; one that does not (stopped, say) is killed, not waited for
	// forever.
	kill := time.AfterFunc(backstopSlack, func() { _ = r.cmd.Process.Kill() })
	err := r.cmd.Wait()
	kill.Stop()
	if r.cmd.ProcessState != nil {
		shimState = r.cmd.ProcessState.String()
	} else if err != nil {
		shimState = err.Error()
	}
	close(r.done)
	close(r.threadDone)
	r.ctrl.Close() // EOF for a watchdog that is somehow still alive; unblocks forward
	r.drainOutput()
	r.wg.Wait()
	r.status.Close()
	r.stdout.Close()
	r.stderr.Close()
	return shimState
}

// drainOutput waits until the command's output has been read to its end, but not forever:
// only processes that could not be killed keep the pipes open longer than the watchdog.
func (r *run) drainOutput() {
	outDone := make(chan struct{})
	go func() { r.output.Wait(); close(outDone) }()
	select {
	case <-outDone:
	case <-time.After(outputDrain):
		_ = r.stdout.SetReadDeadline(time.Now())
		_ = r.stderr.SetReadDeadline(time.Now())
		<-outDone
	}
}

// wait follows the watchdog's reports until its exit report (or until it exits without
// one), cleans up — in the background after an exit report, when Spares can wait for it
// — and maps the outcome to Run's result.
func (r *run) wait(ctx context.Context) error {
	events := make(chan statusMsg)
	r.goFunc(func() {
		defer close(events)
		br := bufio.NewReader(r.status)
		for {
			var m statusMsg
			if err := readMsg(br, &m); err != nil {
				return
			}
			select {
			case events <- m:
			case <-r.done:
				return
			}
		}
	})

	var (
		pid       int
		exit      *statusMsg
		startErr  string
		protoErr  string
		ctxDone   = ctx.Done()
		backstop  <-chan time.Time
		stoppedAt time.Time
		heard     bool
	)
	silence := time.NewTimer(startTimeout)
	defer silence.Stop()
	// The next spare starts refillDelay after this command has started, or when it failed
	// to start or has ended (Spares).
	defer r.spec.Spares.Prepare(r.spec.Shim)
loop:
	for {
		select {
		case <-ctxDone:
			ctxDone = nil
			stoppedAt = time.Now()
			close(r.stopReq)
			t := time.NewTimer(r.spec.StopGrace + lingerTimeout + backstopSlack)
			defer t.Stop()
			backstop = t.C
		case m, ok := <-events:
			if !ok {
				break loop
			}
			if !heard {
				heard = true
				silence.Stop()
			}
			switch m.Ev {
			case evStarted:
				pid = m.Pid
				r.log.Debug("command started", "pid", pid, "watchdog_pid", r.cmd.Process.Pid, "token", r.lease.Token())
				if r.spec.OnStart != nil {
					r.spec.OnStart(pid)
				}
				r.spec.Spares.refillSoon(r.spec.Shim)
			case evFenced:
				r.log.Warn("lease deadline passed without extension; watchdog is stopping the command",
					"pid", pid, "late", time.Duration(m.LateNs))
			case evError:
				if pid == 0 {
					startErr = m.Msg
				} else {
					protoErr = m.Msg
				}
			case evExit:
				exit = &m
				// The last message: the command and what it left behind are gone. The
				// watchdog's own exit (a few ms, tens on a busy machine) is not waited for.
				break loop
			}
		case <-silence.C:
			r.log.Error("the watchdog did not answer; killing it", "after", startTimeout, "shim", r.spec.Shim)
			_ = r.cmd.Process.Kill()
		case <-backstop:
			backstop = nil
			r.log.Error("watchdog did not finish a planned stop; killing it", "pid", pid,
				"after", time.Since(stoppedAt).Round(time.Millisecond))
			_ = r.cmd.Process.Kill()
		}
	}
	shimState := ""
	if exit != nil && startErr == "" && protoErr == "" {
		// The watchdog closed its copies of the output pipes before reporting the exit:
		// what the command wrote last is read here, before Run returns. The watchdog is
		// reaped in the background when Spares can wait for it.
		r.drainOutput()
		if !r.spec.Spares.reap(func() { r.finish() }) {
			r.finish()
		}
	} else {
		shimState = r.finish()
	}

	name := r.spec.Name
	switch {
	case startErr != "":
		return fmt.Errorf("%w: worker %q: %s", ErrStart, name, startErr)
	case exit == nil || protoErr != "":
		if pid != 0 {
			// The watchdog died without cleaning up (it was SIGKILLed, say). Its
			// Pdeathsig took the command itself; take what is left of the group. The
			// group id cannot be reused while any member lives.
			_ = unix.Kill(-pid, syscall.SIGKILL)
		}
		why := protoErr
		switch {
		case why != "":
		case !heard:
			why = fmt.Sprintf("%s never answered (%s); does its main call supervise.MaybeRunWatchdog first thing?", r.spec.Shim, shimState)
		default:
			why = fmt.Sprintf("exited without reporting the command's end (%s)", shimState)
		}
		return fmt.Errorf("%w: worker %q: %s", ErrWatchdog, name, why)
	}

	var exitErr *ExitError
	if exit.Code != 0 || exit.Signal != 0 {
		exitErr = &ExitError{Worker: name, Code: exit.Code, Signal: syscall.Signal(exit.Signal)}
	}
	attrs := []any{"pid", pid, "code", exit.Code}
	if exit.Signal != 0 {
		attrs = append(attrs, "signal", signalName(syscall.Signal(exit.Signal)))
	}
	if exit.Lingering > 0 {
		r.log.Error("processes of the command survived SIGKILL", "pid", pid, "count", exit.Lingering)
	}
	switch {
	case exit.NotStarted:
		return fmt.Errorf("%w: worker %q not started: the lease deadline passed before the watchdog could start it", ErrFenced, name)
	case exit.Fenced:
		r.log.Warn("command fenced", append(attrs, "exit_after_deadline", time.Duration(exit.ExitLateNs), "killed", exit.Killed)...)
		return newEndError(ErrFenced, name, nil, exitErr)
	case exit.Stopped:
		r.log.Debug("command stopped", append(attrs, "after", time.Since(stoppedAt).Round(time.Millisecond), "killed", exit.Killed)...)
		return newEndError(ErrStopped, name, ctx.Err(), exitErr)
	case exit.Orphaned:
		// Only if something else closed our pipe or signalled the watchdog.
		return fmt.Errorf("%w: worker %q: the watchdog lost its coordinator and stopped the command", ErrWatchdog, name)
	}
	r.log.Debug("command exited", attrs...)
	if exitErr != nil {
		return exitErr
	}
	return nil
}
