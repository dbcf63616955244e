// Command reaper is the parent of one coordinator process started by the cluster harness:
//
//	reaper PROGRAM [ARGS...]
//
// It makes itself a child subreaper, starts PROGRAM with stdin from /dev/null and stdout
// and stderr on its own stderr, and then:
//
//   - writes "pid <pid>" on stdout once PROGRAM runs;
//   - writes "exit <code> <signal>" when PROGRAM has ended, but leaves it a zombie, so that
//     its pid cannot be reused while the harness may still signal it by pid;
//   - reaps every other process that ends up its child: supervised commands and their
//     watchdogs are reparented to it when the coordinator dies, and the host's init may
//     not reap them;
//   - on "quit" or EOF on stdin (the harness closed it, or died: Ctrl-C, a test timeout),
//     or on SIGTERM, SIGINT or SIGHUP, SIGKILLs PROGRAM and then every descendant as it
//     becomes its child, reaps them all, writes "done" and exits 0.
//
// PROGRAM also gets Pdeathsig SIGKILL, so that it dies with the reaper even if the reaper
// itself is SIGKILLed.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// killTimeout bounds how long the reaper tries to kill the tree at quit.
const killTimeout = 10 * time.Second

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: reaper PROGRAM [ARGS...]")
		os.Exit(2)
	}
	// Pdeathsig fires when the forking thread exits: keep this one for good.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fail("prctl(PR_SET_CHILD_SUBREAPER): %v", err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)

	devnull, err := os.Open(os.DevNull)
	if err != nil {
		fail("%v", err)
	}
	path := os.Args[1]
	pid, err := syscall.ForkExec(path, os.Args[1:], &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{devnull.Fd(), 2, 2},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		fail("start %s: %v", path, err)
	}
	devnull.Close()
	out := bufio.NewWriter(os.Stdout)
	say := func(format string, args ...any) {
		fmt.Fprintf(out, format+"\n", args...)
		_ = out.Flush()
	}
	say("pid %d", pid)

	quit := make(chan struct{})
	go func() { // ends with the process
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "quit" {
				break
			}
		}
		close(quit)
	}()

	self := os.Getpid()
	exited := false
	reap := func() {
		for _, c := range children(self) {
			if !c.zombie {
				continue
			}
			if c.pid != pid {
				var ws unix.WaitStatus
				_, _ = unix.Wait4(c.pid, &ws, unix.WNOHANG, nil)
				continue
			}
			if !exited {
				exited = true
				code, sig := peekStatus(pid)
				say("exit %d %d", code, sig)
			}
		}
	}
	tick := time.NewTicker(2 * time.Second) // SIGCHLDs coalesce; look now and then
	defer tick.Stop()
loop:
	for {
		select {
		case <-chld:
			reap()
		case <-tick.C:
			reap()
		case <-quit:
			break loop
		case <-sigs:
			break loop
		}
	}

	// Kill the tree: PROGRAM first, then whatever is or becomes our child, until none is
	// left. Descendants of a killed watchdog are reparented to us and die in turn.
	_ = unix.Kill(pid, syscall.SIGKILL)
	deadline := time.Now().Add(killTimeout)
	for time.Now().Before(deadline) {
		kids := children(self)
		if len(kids) == 0 {
			break
		}
		for _, c := range kids {
			if c.zombie {
				if c.pid == pid && !exited {
					exited = true
					code, sig := peekStatus(pid)
					say("exit %d %d", code, sig)
				}
				var ws unix.WaitStatus
				_, _ = unix.Wait4(c.pid, &ws, unix.WNOHANG, nil)
				continue
			}
			_ = unix.Kill(c.pid, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if left := children(self); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "reaper: %d processes survived SIGKILL for %v\n", len(left), killTimeout)
	}
	say("done")
}

// siginfo_t layout on Linux with 64-bit pointers and on 32-bit: si_signo, si_errno,
// si_code, then (pointer-aligned) si_pid, si_uid, si_status.
var (
	siginfoCodeOffset   = uintptr(8)
	siginfoStatusOffset = 3*4 + (unsafe.Sizeof(uintptr(0)) - 4) + 8
)

// peekStatus reads how pid ended without reaping it: the exit code, or -1 and the signal.
func peekStatus(pid int) (code, sig int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT|unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, 0
		}
		break
	}
	p := unsafe.Pointer(&info)
	siCode := *(*int32)(unsafe.Add(p, siginfoCodeOffset))
	status := int(*(*int32)(unsafe.Add(p, siginfoStatusOffset)))
	const cldExited = 1 // CLD_EXITED; CLD_KILLED and CLD_DUMPED carry the signal
	if siCode == cldExited {
		return status, 0
	}
	return -1, status
}

type child struct {
	pid    int
	zombie bool
}

// children lists the processes whose parent is ppid, from /proc/*/stat.
func children(ppid int) []child {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	var out []child
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(data, ')')
		if i < 0 || i+2 >= len(data) {
			continue
		}
		f := bytes.Fields(data[i+2:])
		if len(f) < 2 {
			continue
		}
		if p, err := strconv.Atoi(string(f[1])); err == nil && p == ppid {
			out = append(out, child{pid: pid, zombie: f[0][0] == 'Z' || f[0][0] == 'X'})
		}
	}
	return out
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "reaper: "+format+"\n", args...)
	os.Exit(1)
}
