package cluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Mono is a CLOCK_MONOTONIC reading in nanoseconds. Every process on one host reads the
// same clock, so stamps written by recorders on different nodes and taken by the test
// compare directly, and no NTP step moves them.
type Mono int64

// MonoNow reads CLOCK_MONOTONIC.
func MonoNow() Mono {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("cluster: clock_gettime(CLOCK_MONOTONIC): " + err.Error())
	}
	return Mono(ts.Nano())
}

// Sub returns m − o.
func (m Mono) Sub(o Mono) time.Duration { return time.Duration(m - o) }

// Add returns m + d.
func (m Mono) Add(d time.Duration) Mono { return m + Mono(d) }

// BeatInterval is how often the recorder writes a beat line. A run without a stop line
// (its process was SIGKILLed, or still runs) is taken to end one interval after its last
// beat.
const BeatInterval = 100 * time.Millisecond

// Line kinds in runs.log, as the recorder writes them:
//
//	exec    <worker> <node> <token> <mono ns> <pid>   written before main: the watchdog's
//	                                                   stamp just before it exec'd the copy
//	                                                   (COORD_EXEC_NS; older recorders: none)
//	main    <worker> <node> <token> <mono ns> <pid>   written just before start; the stamp is
//	                                                   when the copy's code first ran, before
//	                                                   its set-up (older recorders: none)
//	start   <worker> <node> <token> <mono ns> <pid>   the copy holds the worker's lock
//	beat    <worker> <node> <token> <mono ns> <pid>   every BeatInterval
//	term    <worker> <node> <token> <mono ns> <pid>   first stop signal, with RECORDER_STOP_DELAY
//	stop    <worker> <node> <token> <mono ns> <pid>   on SIGTERM, SIGINT or SIGHUP; exit 0
//	OVERLAP <worker> <node> <token> <mono ns> <pid>   the lock was held by another copy; exit 3,
//	                                                   or a start line follows (RECORDER_ON_OVERLAP=run)
const (
	lineExec    = "exec"
	lineMain    = "main"
	lineStart   = "start"
	lineBeat    = "beat"
	lineTerm    = "term"
	lineStop    = "stop"
	lineOverlap = "OVERLAP"
)

// RunsFile is the name of the log the recorders of one cluster append to.
const RunsFile = "runs.log"

// Run is one process of a recorder, from its start line to its stop line or its last beat.
type Run struct {
	Worker string
	Node   string
	Token  uint64
	PID    int
	// Start is when the copy took the worker's lock.
	Start Mono
	// Main is when the copy's own code first ran, before it opened runs.log and took the
	// lock: the command's start as early as the recorder can stamp it (its exec and the Go
	// runtime's start-up come before). 0 when the log has no main line for the run.
	Main Mono
	// Exec is the watchdog's stamp just before it exec'd the copy (COORD_EXEC_NS): the
	// command's start as the coordinator sees it. 0 when the log has no exec line.
	Exec Mono
	// End is the stop stamp when Stopped. Otherwise (a SIGKILLed copy, or one that still
	// runs) it is the last beat, or Start, plus BeatInterval — but no later than the start
	// of the worker's next run: that copy got the lock, which the kernel releases only when
	// the holder is gone.
	End Mono
	// LastBeat is the stamp of the last beat line; 0 if none.
	LastBeat Mono
	// Stopped says the copy wrote a stop line: it was asked to stop and exited 0.
	Stopped bool
	// Overlap marks a copy that found the worker's lock held by another live copy and
	// exited at once; Start and End are its stamp. CheckRuns reports every one.
	Overlap bool
	// Unlocked marks a run that started while another copy held the lock (its OVERLAP line
	// came first, RECORDER_ON_OVERLAP=run): it proves nothing about when that copy ended.
	Unlocked bool
	// Signalled is when a copy with RECORDER_STOP_DELAY got its stop signal; 0 if never.
	Signalled Mono
}

// StopTook is how long the copy ran on after its stop signal (0 when it was not asked to
// stop, or said nothing about it).
func (r Run) StopTook() time.Duration {
	if r.Signalled == 0 {
		return 0
	}
	return r.End.Sub(r.Signalled)
}

// Duration is how long the run lasted.
func (r Run) Duration() time.Duration { return r.End.Sub(r.Start) }

func (r Run) String() string {
	kind := "run"
	if r.Overlap {
		kind = "OVERLAP"
	}
	end := "killed or running"
	if r.Stopped {
		end = "stopped"
	}
	return fmt.Sprintf("%s %s on %s token %d pid %d [%d, %d] %v %s",
		kind, r.Worker, r.Node, r.Token, r.PID, r.Start, r.End, r.Duration().Round(time.Millisecond), end)
}

// ReadRuns parses a runs.log written by recorders. A missing file is no runs. A last line
// without its newline (a write seen half done) is ignored; any other malformed line is an
// error. Runs are sorted by Start.
func ReadRuns(path string) ([]Run, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: read runs: %w", err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i < len(data)-1 {
		data = data[:i+1]
	}
	var runs []*Run
	current := map[int]*Run{}   // pid → its latest run
	refused := map[int]string{} // pid → worker, after an OVERLAP line
	mains := map[int]Mono{}     // pid → its main stamp, until its start line
	execs := map[int]Mono{}     // pid → its exec stamp, until its start line
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 6 {
			return nil, fmt.Errorf("cluster: %s:%d: want 6 fields, got %q", path, n, sc.Text())
		}
		token, err1 := strconv.ParseUint(f[3], 10, 64)
		stamp, err2 := strconv.ParseInt(f[4], 10, 64)
		pid, err3 := strconv.Atoi(f[5])
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("cluster: %s:%d: %w", path, n, err)
		}
		at := Mono(stamp)
		switch f[0] {
		case lineMain:
			mains[pid] = at
		case lineExec:
			execs[pid] = at
		case lineStart, lineOverlap, "overlap":
			r := &Run{Worker: f[1], Node: f[2], Token: token, PID: pid, Start: at, End: at.Add(BeatInterval)}
			if f[0] == lineStart {
				r.Main, r.Exec = mains[pid], execs[pid]
				delete(mains, pid)
				delete(execs, pid)
			}
			if f[0] != lineStart {
				r.Overlap, r.End = true, at
				refused[pid] = r.Worker
			} else {
				r.Unlocked = refused[pid] == r.Worker
				delete(refused, pid)
				current[pid] = r
			}
			runs = append(runs, r)
		case lineTerm:
			r := current[pid]
			if r == nil || r.Worker != f[1] {
				return nil, fmt.Errorf("cluster: %s:%d: %s of pid %d without a start", path, n, f[0], pid)
			}
			if r.Signalled == 0 {
				r.Signalled = at
			}
			r.LastBeat, r.End = at, at.Add(BeatInterval)
		case lineBeat, lineStop:
			r := current[pid]
			if r == nil || r.Worker != f[1] {
				return nil, fmt.Errorf("cluster: %s:%d: %s of pid %d without a start", path, n, f[0], pid)
			}
			if f[0] == lineStop {
				r.Stopped, r.End = true, at
				delete(current, pid)
			} else {
				r.LastBeat, r.End = at, at.Add(BeatInterval)
			}
		default:
			return nil, fmt.Errorf("cluster: %s:%d: unknown line kind %q", path, n, f[0])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cluster: read runs: %w", err)
	}
	out := make([]Run, len(runs))
	for i, r := range runs {
		out[i] = *r
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	next := map[string]Mono{} // worker → start of its next lock-holding run
	for i := len(out) - 1; i >= 0; i-- {
		r := &out[i]
		if r.Overlap {
			continue
		}
		if n, ok := next[r.Worker]; ok && !r.Stopped && r.End > n {
			r.End = n
		}
		if !r.Unlocked {
			next[r.Worker] = r.Start
		}
	}
	return out, nil
}

// Violation kinds.
const (
	// ViolationOverlap: two runs of one worker were alive at the same time (from their
	// stamps; a SIGKILLed run counts until its last beat + BeatInterval).
	ViolationOverlap = "overlap"
	// ViolationLock: a copy found the worker's lock held by a live copy (an OVERLAP line).
	// This is exact: the kernel releases the lock only when the holder is gone.
	ViolationLock = "lock"
	// ViolationToken: a run's fencing token is smaller than its predecessor's, or equal
	// while on another node (equal tokens on one node are restarts within one term).
	ViolationToken = "token"
)

// Violation is a breach of the exactly-once rules found by CheckRuns.
type Violation struct {
	Kind   string
	Worker string
	// A and B are the runs concerned. For ViolationLock A is the refused copy and B the
	// run that held the lock then, if its start line is in the log (else B.PID is 0).
	A, B   Run
	Detail string
}

// SameNode reports whether both runs of the violation ran on one node — two copies under
// one coordinator, which no per-node lock of the coordinator's own would have allowed.
func (v Violation) SameNode() bool { return v.B.PID != 0 && v.A.Node == v.B.Node }

// Together is how long the two runs of a ViolationOverlap ran at the same time (0 for the
// other kinds).
func (v Violation) Together() time.Duration {
	if v.Kind != ViolationOverlap {
		return 0
	}
	return min(v.A.End, v.B.End).Sub(v.B.Start)
}

func (v Violation) String() string {
	return fmt.Sprintf("%s violation on %s: %s", v.Kind, v.Worker, v.Detail)
}

// CheckRuns returns every violation in runs: overlapping runs of one worker, OVERLAP lines,
// and fencing tokens that do not increase from one run of a worker to the next.
func CheckRuns(runs []Run) []Violation {
	var out []Violation
	for worker, rs := range byWorker(runs) {
		var live []Run
		for _, r := range rs {
			if !r.Overlap {
				live = append(live, r)
			}
		}
		for _, r := range rs {
			if !r.Overlap {
				continue
			}
			v := Violation{Kind: ViolationLock, Worker: worker, A: r}
			for _, h := range live { // the latest run alive at r's stamp held the lock
				if h.Start <= r.Start && r.Start <= h.End && h.PID != r.PID {
					v.B = h
				}
			}
			held := "another copy"
			if v.B.PID != 0 {
				held = fmt.Sprintf("pid %d on %s (token %d)", v.B.PID, v.B.Node, v.B.Token)
			}
			v.Detail = fmt.Sprintf("pid %d on %s (token %d) found the lock held by %s at %d%s", r.PID, r.Node, r.Token, held, r.Start, where(v))
			out = append(out, v)
		}
		for i, a := range live {
			for _, b := range live[i+1:] {
				if b.Start >= a.End {
					break // runs are sorted by Start, so no later b overlaps a either
				}
				v := Violation{Kind: ViolationOverlap, Worker: worker, A: a, B: b}
				v.Detail = fmt.Sprintf("%s and %s ran together for %v%s (%v)", a.Node, b.Node,
					v.Together().Round(time.Millisecond), where(v), pair(a, b))
				out = append(out, v)
			}
			if i > 0 {
				p := live[i-1]
				if a.Token < p.Token || (a.Token == p.Token && a.Node != p.Node) {
					out = append(out, Violation{Kind: ViolationToken, Worker: worker, A: p, B: a,
						Detail: fmt.Sprintf("token %d on %s follows token %d on %s", a.Token, a.Node, p.Token, p.Node)})
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Worker != out[j].Worker {
			return out[i].Worker < out[j].Worker
		}
		return out[i].A.Start < out[j].A.Start
	})
	return out
}

func where(v Violation) string {
	switch {
	case v.B.PID == 0:
		return ""
	case v.SameNode():
		return ", on one node"
	default:
		return ", across nodes"
	}
}

func pair(a, b Run) string {
	return fmt.Sprintf("pid %d token %d, pid %d token %d", a.PID, a.Token, b.PID, b.Token)
}

// Gap is a time when a worker ran nowhere, between two of its runs.
type Gap struct {
	From, To Mono // the end of the coverage before, the next start
	// Before and After are the run that ended the coverage and the run that resumed it.
	Before, After Run
}

// Duration is the length of the gap.
func (g Gap) Duration() time.Duration { return g.To.Sub(g.From) }

// Gaps returns, for each worker, the longest time between its first start and last end
// when no copy of it ran. A worker that never stopped running has a zero Gap.
func Gaps(runs []Run) map[string]Gap {
	out := map[string]Gap{}
	for worker, rs := range byWorker(runs) {
		var longest Gap
		var covered Mono
		var last Run
		first := true
		for _, r := range rs {
			if r.Overlap {
				continue
			}
			if !first && r.Start > covered && r.Start.Sub(covered) > longest.Duration() {
				longest = Gap{From: covered, To: r.Start, Before: last, After: r}
			}
			if first || r.End > covered {
				covered, last = r.End, r
			}
			first = false
		}
		out[worker] = longest
	}
	return out
}

// byWorker groups runs by worker, each group sorted by Start.
func byWorker(runs []Run) map[string][]Run {
	m := map[string][]Run{}
	for _, r := range runs {
		m[r.Worker] = append(m[r.Worker], r)
	}
	for _, rs := range m {
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].Start < rs[j].Start })
	}
	return m
}

// RunsOf returns the runs of worker (no OVERLAP entries), sorted by Start.
func RunsOf(runs []Run, worker string) []Run {
	var out []Run
	for _, r := range runs {
		if r.Worker == worker && !r.Overlap {
			out = append(out, r)
		}
	}
	return out
}
