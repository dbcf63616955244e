package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The holder is its own small program, bench/holder (package main there): one process that
// uses the ownership library with N no-op Go workers, the way an application embeds it, so
// that its CPU and memory can be read from /proc without the benchmark's own. It links only
// the library, kv and the NATS client, not the benchmark's plotting and cluster code, which
// added about 6 MB of file-backed RSS that an application would not pay. setup builds
// it once into the work directory (buildHolder); startHolder runs it. Its flags and output
// lines are described in bench/holder/main.go: "ready", "registered N SECONDS" (-late) and
// "owned N renewals R errors E lost L claimed C", parsed here.

// holderPkg is the holder's package, built with the go command from the module.
const holderPkg = "github.com/jetcoord/coordinator/bench/holder"

// buildHolder builds the holder program into dir and returns its path: with CGO_ENABLED=0,
// like the Makefile's build of the daemon, and -trimpath, a static binary as an
// application would ship it.
func buildHolder(dir string) (string, error) {
	out := filepath.Join(dir, "holder")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, holderPkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		detail := err.Error()
		if m := strings.TrimSpace(string(msg)); m != "" {
			detail += "\n" + m + "\n"
		}
		return "", fmt.Errorf("building the holder (go build %s): %s; run the bench from the repository root (make bench, or go run ./bench) with Go installed",
			holderPkg, detail)
	}
	return out, nil
}

// holder is a running holder process, seen from the benchmark.
type holder struct {
	node     string
	logPath  string // its stderr: the ownership library's warnings
	logFile  *os.File
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	ready    chan struct{}
	owned    atomic.Int64
	renewals atomic.Int64
	errors   atomic.Int64
	lost     atomic.Int64 // leases the holder's engine lost (Metrics.LeaseLost)
	claimed  atomic.Int64 // ownership terms the holder began (Metrics.Owned(+1))
	// registered is closed once a -late holder printed how long its Register calls took
	// (registerS, seconds).
	registered chan struct{}
	registerS  float64
	done       chan struct{}
	wg         sync.WaitGroup
}

// startHolder runs the holder program (built by setup) against url; its stderr goes to a
// file in the work directory.
func (b *bench) startHolder(url, ns, node, prefix string, workers int, extra ...string) (*holder, error) {
	logPath := filepath.Join(b.work, fmt.Sprintf("holder-%s-%s.log", ns, node))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := append([]string{"-nats", url, "-namespace", ns, "-node", node,
		"-workers", strconv.Itoa(workers), "-prefix", prefix}, extra...)
	cmd := exec.Command(b.holderBin, args...)
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	h := &holder{node: node, logPath: logPath, logFile: logFile, cmd: cmd, stdin: stdin, ready: make(chan struct{}), registered: make(chan struct{}), done: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(h.done)
		sc := bufio.NewScanner(stdout)
		readyOnce := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "ready":
				readyOnce.Do(func() { close(h.ready) })
			case strings.HasPrefix(line, "registered "):
				var n int
				if _, err := fmt.Sscanf(line, "registered %d %g", &n, &h.registerS); err == nil {
					close(h.registered)
				}
			case strings.HasPrefix(line, "owned "):
				var o, r, e, l, c int64
				if _, err := fmt.Sscanf(line, "owned %d renewals %d errors %d lost %d claimed %d", &o, &r, &e, &l, &c); err == nil {
					h.owned.Store(o)
					h.renewals.Store(r)
					h.errors.Store(e)
					h.lost.Store(l)
					h.claimed.Store(c)
				}
			}
		}
		_ = cmd.Wait()
	}()
	return h, nil
}

func (h *holder) PID() int { return h.cmd.Process.Pid }

// WaitReady waits until the holder's engine has started.
func (h *holder) WaitReady(timeout time.Duration) error {
	select {
	case <-h.ready:
		return nil
	case <-h.done:
		return fmt.Errorf("holder %s exited before it was ready", h.node)
	case <-time.After(timeout):
		return fmt.Errorf("holder %s not ready after %v", h.node, timeout)
	}
}

// Stop asks the holder to release its workers and exit, and kills it after a grace.
func (h *holder) Stop() {
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(45 * time.Second):
		_ = h.cmd.Process.Kill()
	}
	h.stdin.Close()
	h.wg.Wait()
	h.logFile.Close()
}

// Complaints counts the holder's log records at WARN and above by message, e.g.
// {"could not release claim; it will expire": 12}.
func (h *holder) Complaints() map[string]int {
	data, err := os.ReadFile(h.logPath)
	if err != nil {
		return nil
	}
	out := map[string]int{}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, "level=WARN") && !strings.Contains(line, "level=ERROR") {
			continue
		}
		msg := "?"
		if i := strings.Index(line, `msg="`); i >= 0 {
			rest := line[i+5:]
			if j := strings.IndexByte(rest, '"'); j >= 0 {
				msg = rest[:j]
			}
		} else if i := strings.Index(line, "msg="); i >= 0 {
			msg = strings.Fields(line[i+4:])[0]
		}
		out[msg]++
	}
	return out
}

// waitOwned waits until the holders own total workers between them, and the counts have
// not changed for stable.
func waitOwned(hs []*holder, total int, stable, timeout time.Duration) ([]int, error) {
	deadline := time.Now().Add(timeout)
	var last []int
	var since time.Time
	for {
		counts := make([]int, len(hs))
		sum := 0
		for i, h := range hs {
			counts[i] = int(h.owned.Load())
			sum += counts[i]
			select {
			case <-h.done:
				return counts, fmt.Errorf("holder %s exited", h.node)
			default:
			}
		}
		same := len(last) == len(counts)
		for i := range counts {
			same = same && last[i] == counts[i]
		}
		if !same {
			last, since = counts, time.Now()
		}
		if sum == total && time.Since(since) >= stable {
			return counts, nil
		}
		if time.Now().After(deadline) {
			return counts, errors.New("timed out waiting for the holders to own " + strconv.Itoa(total) + " workers")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
