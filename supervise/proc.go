package supervise

import (
	"bytes"
	"os"
	"strconv"
)

// ownChildren lists the pids of this process's children, from
// /proc/self/task/*/children: a few small reads however many processes the machine runs
// (a scan of every /proc/*/stat took 10–25 ms of each handoff). That file may skip an
// entry only when an entry before it leaves the list during the read; the watchdog reads
// it only while nothing of ours reaps (reapOrphans has returned, and drain reaps between
// reads), and a child leaves our list only when reaped, so every child present for the
// whole read is listed. Orphans reparented to us are appended at the end of a list, which
// does not disturb the read. Each list is a thread's: the command is a child of the thread
// that forked it, locked to it for the watchdog's life (runWatchdog), and the kernel gives
// orphans to a live thread of their reaper starting with that one, so no child moves from
// one list to another while we read. ok is false when the kernel has no such file
// (CONFIG_PROC_CHILDREN unset); use children then.
func ownChildren() (pids []int, ok bool) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, false
	}
	for _, t := range tasks {
		data, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
		if err != nil {
			if os.IsNotExist(err) {
				if _, serr := os.Stat("/proc/self/task/" + t.Name()); serr == nil {
					return nil, false // the thread is there, the file is not
				}
				continue // the thread ended
			}
			return nil, false
		}
		for _, f := range bytes.Fields(data) {
			if pid, err := strconv.Atoi(string(f)); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids, true
}

type childProc struct {
	pid    int
	zombie bool
}

// children lists the processes whose parent is ppid, from /proc/*/stat. A process that
// exists for the whole scan is always listed (unlike /proc/PID/task/TID/children, which
// may skip entries while the list changes). It reads a file per process on the machine:
// the fallback of ownChildren.
func children(ppid int) []childProc {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	var out []childProc
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		state, parent, ok := procStat(pid)
		if ok && parent == ppid {
			out = append(out, childProc{pid: pid, zombie: state == 'Z' || state == 'X'})
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
	// "pid (comm) S ppid ...": comm may contain spaces and parentheses.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return 0, 0, false
	}
	fields := bytes.Fields(data[i+2:])
	if len(fields) < 2 || len(fields[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(string(fields[1]))
	if err != nil {
		return 0, 0, false
	}
	return fields[0][0], ppid, true
}
