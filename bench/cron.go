package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// parseTick reads COORD_TICK: unix seconds, or an RFC 3339 time.
func parseTick(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("COORD_TICK %q is neither unix seconds nor RFC 3339", s)
}

// cronDelays reads the ticks log ("job tick node start-ns") and returns, for the ticks
// scheduled at or after since, the delay from the scheduled time to the command's start.
func cronDelays(path string, since time.Time) ([]time.Duration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []time.Duration
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		tick, err := parseTick(f[1])
		if err != nil {
			return nil, err
		}
		ns, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("start stamp %q: %w", f[3], err)
		}
		if tick.Before(since) {
			continue
		}
		out = append(out, time.Unix(0, ns).Sub(tick))
	}
	return out, nil
}
