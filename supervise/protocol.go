package supervise

import (
	"bufio"
	"encoding/json"
	"math"
	"time"

	"golang.org/x/sys/unix"
)

// The coordinator and its watchdog talk over two pipes, one JSON object per line.
//
// Control pipe, coordinator → watchdog (the watchdog's fd 3):
//
//	{"op":"start","deadline":N,"start":{...}}   exactly once, first; nothing runs before it
//	{"op":"deadline","deadline":N}              a new lease deadline
//	{"op":"fence","deadline":N}                 the lease was lost: fence at N (pulls the
//	                                            deadline in; later deadlines are ignored)
//	{"op":"stop"}                               planned stop
//
// EOF on it means the coordinator is gone. Status pipe, watchdog → coordinator (fd 4):
//
//	{"ev":"started","pid":P}                    the command runs; P is also its process group
//	{"ev":"fenced","late_ns":L}                 the deadline passed; stopping the group
//	{"ev":"error","msg":"..."}                  the command could not be started
//	{"ev":"exit",...}                           last message: how it ended
//
// Deadlines N are absolute CLOCK_MONOTONIC readings in nanoseconds: the same clock in both
// processes, so a message that sits in the pipe while either side is paused keeps its
// meaning, and the watchdog never has to trust the coordinator's notion of "now".
const (
	watchdogArg     = "__supervise-watchdog" // os.Args[1] of the watchdog
	protocolVersion = 2
	controlFD       = 3
	statusFD        = 4

	opStart    = "start"
	opDeadline = "deadline"
	opFence    = "fence"
	opStop     = "stop"

	evStarted = "started"
	evFenced  = "fenced"
	evError   = "error"
	evExit    = "exit"
)

type controlMsg struct {
	Op       string    `json:"op"`
	Deadline int64     `json:"deadline,omitempty"`
	Start    *startMsg `json:"start,omitempty"`
}

type startMsg struct {
	Version    int      `json:"version"`
	Name       string   `json:"name"`
	Path       string   `json:"path"`
	Args       []string `json:"args"` // argv, including argv[0]
	Env        []string `json:"env"`
	Dir        string   `json:"dir,omitempty"`
	StopSignal int      `json:"stop_signal"`
	StopGrace  int64    `json:"stop_grace_ns"`
	FenceGrace int64    `json:"fence_grace_ns"`
}

type statusMsg struct {
	Ev  string `json:"ev"`
	Pid int    `json:"pid,omitempty"`
	Msg string `json:"msg,omitempty"`
	// LateNs is how long after the deadline the watchdog noticed it had passed.
	LateNs int64 `json:"late_ns,omitempty"`

	// Fields of "exit".
	Code       int   `json:"code"`
	Signal     int   `json:"signal,omitempty"`
	Fenced     bool  `json:"fenced,omitempty"`      // the deadline passed while the command ran
	Stopped    bool  `json:"stopped,omitempty"`     // a planned stop was requested while it ran
	Orphaned   bool  `json:"orphaned,omitempty"`    // the coordinator went away
	Killed     bool  `json:"killed,omitempty"`      // SIGKILL was sent to the group
	NotStarted bool  `json:"not_started,omitempty"` // the deadline had passed before the start
	ExitLateNs int64 `json:"exit_late_ns,omitempty"`
	Lingering  int   `json:"lingering,omitempty"` // descendants still alive when giving up
}

func readMsg(r *bufio.Reader, v any) error {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}

// monoNow reads CLOCK_MONOTONIC in nanoseconds. Go's own monotonic readings come from the
// same clock, so time.Timer durations and these values agree.
func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("supervise: clock_gettime(CLOCK_MONOTONIC): " + err.Error())
	}
	return ts.Nano()
}

// monoDeadline converts a deadline on this process's clock into an absolute
// CLOCK_MONOTONIC reading. The clock is read first and the remaining time second: a pause
// between the two shrinks the remaining time, so the result can only come out early.
func monoDeadline(d time.Time) int64 {
	now := monoNow()
	remaining := time.Until(d)
	if remaining > 0 && int64(remaining) > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + int64(remaining)
}
