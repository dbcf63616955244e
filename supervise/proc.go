package supervise

import (
	"bytes"
	"os"
	"strconv"
)

type childProc struct {
	pid    int
	zombie bool
}

// children lists the processes whose parent is ppid, from /proc/*/stat. A process that
// exists for the whole scan is always listed (unlike /proc/PID/task/TID/children, which
// may skip entries while the list changes).
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
