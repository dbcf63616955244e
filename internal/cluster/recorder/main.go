// Command recorder is the supervised command of the cluster harness's test workers. It
// records when each copy of a worker runs, so that a test can prove no two copies of one
// worker ever ran at once:
//
//	recorder DIR
//
// It reads COORD_WORKER, COORD_NODE and COORD_TOKEN from its environment. On start it
// takes an exclusive, non-blocking flock on DIR/locks/<worker>; if another live copy holds
// it, it appends an "OVERLAP" line and exits 3. Otherwise it appends
//
//	start <worker> <node> <token> <CLOCK_MONOTONIC ns> <pid>
//
// to DIR/runs.log, preceded by a "main" line of the same shape whose stamp was taken
// first thing in the process, before its set-up (opening runs.log, taking the lock): the
// command's start as early as the recorder can see it (only the exec and the Go runtime's
// own start-up come before), and, when the command runs under a coordinator's watchdog,
// an "exec" line stamped with COORD_EXEC_NS, the watchdog's reading just before it exec'd
// the copy. Then a "beat" line of the same shape every 100 ms, and a "stop" line when
// it gets SIGTERM, SIGINT or SIGHUP, then exits 0. Each line is one write(2) on a file
// opened with O_APPEND, so lines of concurrent copies never interleave. A SIGKILLed copy
// leaves no stop line; readers (cluster.ReadRuns) end it at its last beat + 100 ms.
//
// With RECORDER_IGNORE_STOP=1 it ignores those signals and beats on until it is
// SIGKILLed, like a command that does not honour its stop signal.
//
// With RECORDER_STOP_DELAY=D (a Go duration) it writes a "term" line when the first stop
// signal comes, beats on for D, then writes its stop line and exits 0: a command whose stop
// takes D. Later signals are ignored.
//
// With RECORDER_ON_OVERLAP=run a copy that finds the lock held writes its OVERLAP line and
// then runs anyway (start, beats, stop), taking the lock once the other copy is gone, so
// that the stamps show how long the two copies really ran together.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const beat = 100 * time.Millisecond

// mainStamp is CLOCK_MONOTONIC when the program's own code first ran: a package variable
// is initialised before main, and before anything else of this package.
var mainStamp = monoNow()

func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// lockFile keeps the locked file reachable: a collected *os.File would close its
// descriptor and drop the lock while the copy still runs.
var lockFile *os.File

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: recorder DIR (with COORD_WORKER, COORD_NODE, COORD_TOKEN set)")
		os.Exit(2)
	}
	dir := os.Args[1]
	worker, node, token := os.Getenv("COORD_WORKER"), os.Getenv("COORD_NODE"), os.Getenv("COORD_TOKEN")
	if worker == "" || node == "" || token == "" {
		fmt.Fprintln(os.Stderr, "recorder: COORD_WORKER, COORD_NODE and COORD_TOKEN must be set")
		os.Exit(2)
	}
	// Catch the stop signals before anything is written, so that none is lost.
	sigs := make(chan os.Signal, 1)
	var stopDelay time.Duration
	if v := os.Getenv("RECORDER_STOP_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			fmt.Fprintf(os.Stderr, "recorder: RECORDER_STOP_DELAY=%q: want a duration such as 5s\n", v)
			os.Exit(2)
		}
		stopDelay = d
	}
	runOnOverlap := os.Getenv("RECORDER_ON_OVERLAP") == "run"
	if os.Getenv("RECORDER_IGNORE_STOP") == "1" {
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	} else {
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	}

	log, err := os.OpenFile(filepath.Join(dir, "runs.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fail(err)
	}
	lineAt := func(kind string, at int64) {
		b := fmt.Appendf(nil, "%s %s %s %s %d %d\n", kind, worker, node, token, at, os.Getpid())
		if _, err := log.Write(b); err != nil {
			fail(err)
		}
	}
	line := func(kind string) {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			fail(err)
		}
		lineAt(kind, ts.Nano())
	}

	if err := os.MkdirAll(filepath.Join(dir, "locks"), 0o755); err != nil {
		fail(err)
	}
	// The lock file stays open (and locked) until the process is gone, however it ends.
	lock, err := os.OpenFile(filepath.Join(dir, "locks", worker), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		fail(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if err != unix.EWOULDBLOCK {
			fail(err)
		}
		line("OVERLAP")
		fmt.Fprintf(os.Stderr, "recorder: OVERLAP: another copy of %s holds the lock\n", worker)
		if !runOnOverlap {
			os.Exit(3)
		}
		// Take the lock once the other copy is gone, so that a third copy is still seen.
		go func() { _ = unix.Flock(int(lock.Fd()), unix.LOCK_EX) }()
	}
	lockFile = lock

	// COORD_EXEC_NS: the watchdog's stamp, just before it exec'd this copy.
	if v, err := strconv.ParseInt(os.Getenv("COORD_EXEC_NS"), 10, 64); err == nil && v > 0 {
		lineAt("exec", v)
	}
	if mainStamp != 0 {
		lineAt("main", mainStamp)
	}
	line("start")
	t := time.NewTicker(beat)
	var stopAt <-chan time.Time
	for {
		select {
		case <-t.C:
			line("beat")
		case <-sigs:
			if stopDelay == 0 {
				line("stop")
				os.Exit(0)
			}
			if stopAt == nil {
				line("term")
				stopAt = time.After(stopDelay)
			}
		case <-stopAt:
			line("stop")
			os.Exit(0)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "recorder:", err)
	os.Exit(1)
}
