package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the unit of utime and stime in /proc/<pid>/stat (USER_HZ), 100 on Linux.
const clockTicks = 100

// cpuTime returns the CPU time (user + system) a process has used so far.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// "pid (comm) state ppid …": comm may hold spaces, so count fields after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	// After comm: state(3) ppid(4) … utime(14) stime(15), 1-based over the whole line.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// cpuMeter measures the CPU share of processes over a window.
type cpuMeter struct {
	pids  []int
	t0    time.Time
	start []time.Duration
}

func startCPU(pids ...int) (*cpuMeter, error) {
	m := &cpuMeter{pids: pids, t0: time.Now()}
	for _, p := range pids {
		c, err := cpuTime(p)
		if err != nil {
			return nil, err
		}
		m.start = append(m.start, c)
	}
	return m, nil
}

// Percent returns, per pid, the CPU used since start as a percentage of one core.
func (m *cpuMeter) Percent() ([]float64, error) {
	wall := time.Since(m.t0)
	out := make([]float64, len(m.pids))
	for i, p := range m.pids {
		c, err := cpuTime(p)
		if err != nil {
			return nil, err
		}
		out[i] = 100 * float64(c-m.start[i]) / float64(wall)
	}
	return out, nil
}

// rssMB returns the resident set size of a process in MiB (VmRSS).
func rssMB(pid int) (float64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fs := strings.Fields(v) // "12345 kB"
			if len(fs) >= 1 {
				kb, err := strconv.ParseFloat(fs[0], 64)
				if err != nil {
					return 0, err
				}
				return kb / 1024, nil
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}
