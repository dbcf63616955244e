package cluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotRunning is returned by Node methods that need a running coordinator process.
var ErrNotRunning = errors.New("cluster: node is not running")

// ExitStatus is how a coordinator process ended.
type ExitStatus struct {
	Code   int            // exit code; -1 when killed by a signal
	Signal syscall.Signal // the signal that killed it, or 0
}

func (e ExitStatus) String() string {
	if e.Signal != 0 {
		return "killed by " + unix.SignalName(e.Signal)
	}
	return "exit " + strconv.Itoa(e.Code)
}

// process is one coordinator process under its reaper (see internal/cluster/reaper): the
// reaper keeps the coordinator unreaped until quit, so its pid stays ours to signal.
type process struct {
	reaper *exec.Cmd
	stdin  io.WriteCloser
	pid    int // the coordinator

	exited chan struct{} // closed when the coordinator has ended
	status ExitStatus    // valid after exited
	done   chan struct{} // closed when the reaper has been waited for
	once   sync.Once     // quit
}

// startProcess runs argv under the reaper. The reaper gets its own process group (so that
// a Ctrl-C in the terminal of the test reaches none of it: the reaper then sees its stdin
// close and kills the whole tree) and stderr; the coordinator inherits both.
func startProcess(reaper string, argv, env []string, stderr *os.File) (*process, error) {
	cmd := exec.Command(reaper, argv...)
	cmd.Env = env
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cluster: start %s: %w", reaper, err)
	}
	p := &process{reaper: cmd, stdin: stdin, exited: make(chan struct{}), done: make(chan struct{})}
	started := make(chan int, 1)
	go p.follow(stdout, started)
	select {
	case pid := <-started:
		if pid == 0 {
			p.quit(5 * time.Second)
			return nil, fmt.Errorf("cluster: %s did not start %s (see its log)", reaper, argv[0])
		}
		p.pid = pid
	case <-time.After(30 * time.Second):
		p.quit(5 * time.Second)
		return nil, fmt.Errorf("cluster: %s did not report a pid within 30s", reaper)
	}
	return p, nil
}

// follow reads the reaper's reports until it exits, then waits for it.
func (p *process) follow(stdout io.Reader, started chan<- int) {
	defer close(p.done)
	sc := bufio.NewScanner(stdout)
	sentPid := false
	exited := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "pid" && !sentPid:
			pid, _ := strconv.Atoi(f[1])
			started <- pid
			sentPid = true
		case len(f) == 3 && f[0] == "exit" && !exited:
			code, _ := strconv.Atoi(f[1])
			sig, _ := strconv.Atoi(f[2])
			p.status = ExitStatus{Code: code, Signal: syscall.Signal(sig)}
			exited = true
			close(p.exited)
		}
	}
	_ = p.reaper.Wait()
	if !sentPid {
		started <- 0
	}
	if !exited {
		p.status = ExitStatus{Code: -1}
		close(p.exited)
	}
}

// running reports whether the coordinator has not ended yet.
func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// signal sends sig to the coordinator alone (not its group, not its children).
func (p *process) signal(sig syscall.Signal) error {
	if !p.running() {
		return ErrNotRunning
	}
	// The coordinator stays an unreaped child of the reaper until quit, so the pid is
	// still its own even if it has just ended.
	return unix.Kill(p.pid, sig)
}

// wait waits up to timeout for the coordinator to end.
func (p *process) wait(timeout time.Duration) (ExitStatus, error) {
	select {
	case <-p.exited:
		return p.status, nil
	case <-time.After(timeout):
		return ExitStatus{}, fmt.Errorf("cluster: pid %d still running after %v", p.pid, timeout)
	}
}

// quit makes the reaper kill the coordinator and every process below it, reap them and
// exit; it waits for that up to timeout and then SIGKILLs the reaper's process group.
func (p *process) quit(timeout time.Duration) error {
	var err error
	p.once.Do(func() {
		_, _ = io.WriteString(p.stdin, "quit\n")
		_ = p.stdin.Close()
		select {
		case <-p.done:
			return
		case <-time.After(timeout):
		}
		err = fmt.Errorf("cluster: reaper %d did not finish within %v; killing its process group", p.reaper.Process.Pid, timeout)
		_ = unix.Kill(-p.reaper.Process.Pid, syscall.SIGKILL)
		<-p.done
	})
	return err
}

// descendants returns the live (not zombie) processes below the reaper: the coordinator,
// its watchdogs and supervised commands, and anything they started.
func (p *process) descendants() []int {
	procs := readProcs()
	kids := map[int][]int{}
	for _, pr := range procs {
		kids[pr.ppid] = append(kids[pr.ppid], pr.pid)
	}
	zombie := map[int]bool{}
	for _, pr := range procs {
		zombie[pr.pid] = pr.zombie
	}
	var out []int
	queue := []int{p.reaper.Process.Pid}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range kids[pid] {
			if !zombie[c] {
				out = append(out, c)
			}
			queue = append(queue, c)
		}
	}
	return out
}

type procInfo struct {
	pid, ppid int
	zombie    bool
}

func readProcs() []procInfo {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	out := make([]procInfo, 0, len(names))
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		state, ppid, ok := procStat(pid)
		if ok {
			out = append(out, procInfo{pid: pid, ppid: ppid, zombie: state == 'Z' || state == 'X'})
		}
	}
	return out
}

// procStat returns the state letter and parent pid of a process.
func procStat(pid int) (state byte, ppid int, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// "pid (comm) S ppid ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return 0, 0, false
	}
	f := bytes.Fields(data[i+2:])
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(string(f[1]))
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], ppid, true
}

// Alive reports whether pid is a live process: kill(pid, 0) finds it and it is not a
// zombie. A zombie has ended; only its parent has not collected it yet.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := unix.Kill(pid, 0); err == unix.ESRCH {
		return false
	}
	state, _, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X'
}

// stopped reports whether pid is in the stopped state (SIGSTOP took effect).
func stopped(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state == 'T'
}
