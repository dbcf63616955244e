package scheduler

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// cronParser is the spec syntax: five fields, an optional leading seconds field, or a
// descriptor (@hourly, @every 10m) — the same as the configuration file's.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule computes the ticks of a job. It is pure: the same spec and time give the same
// tick on every node. Build it with ParseSchedule.
//
// Calendar specs (fields and @hourly, @daily, …) follow robfig/cron/v3 in the schedule's
// time zone, including its handling of daylight saving time:
//   - a wall time that does not exist (clocks jump forward) is skipped: "30 2 * * *" in
//     Europe/Berlin does not fire on 2026-03-29, when 02:00 becomes 03:00;
//   - a wall time that happens twice (clocks go back) fires twice, once at each offset:
//     "30 2 * * *" fires on 2026-10-25 at 02:30 CEST and again at 02:30 CET, an hour
//     later. The two are different ticks with different claim keys, so each runs once.
//
// "@every d" differs from robfig/cron, whose interval counts from when its process
// started: here the ticks are the multiples of d since the Unix epoch, so that every node
// computes the same ticks. "@every 1h" fires at the top of every UTC hour, "@every 90m" at
// 00:00, 01:30, 03:00 … UTC; the time zone does not apply. d must be whole seconds, at
// least 1s.
type Schedule struct {
	spec  string
	loc   *time.Location
	every time.Duration // > 0 for "@every"
	cal   cron.Schedule
}

// ParseSchedule parses spec in the time zone loc (nil means UTC). The zone is an argument
// rather than part of the spec: a "TZ=" or "CRON_TZ=" prefix is refused, as is time.Local,
// whose meaning differs between machines. It returns an error wrapping ErrInvalidSchedule
// or ErrInvalidTimeZone.
func ParseSchedule(spec string, loc *time.Location) (Schedule, error) {
	if loc == nil {
		loc = time.UTC
	}
	if loc == time.Local {
		return Schedule{}, invalid(ErrInvalidTimeZone, "time zone Local is the machine's zone, which may differ between nodes: name the zone, e.g. Europe/Berlin, or use UTC")
	}
	trimmed := strings.TrimSpace(spec)
	switch {
	case trimmed == "":
		return Schedule{}, invalid(ErrInvalidSchedule, `invalid schedule %q: empty (write e.g. "0 * * * *" for hourly or "@every 10m")`, spec)
	case strings.HasPrefix(trimmed, "TZ=") || strings.HasPrefix(trimmed, "CRON_TZ="):
		zone, rest, _ := strings.Cut(trimmed, " ")
		_, zone, _ = strings.Cut(zone, "=")
		return Schedule{}, invalid(ErrInvalidSchedule, "invalid schedule %q: it sets a time zone; pass the zone %q with WithTimeZone and the schedule %q", spec, zone, strings.TrimSpace(rest))
	}
	if rest, ok := strings.CutPrefix(trimmed, "@every "); ok {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		switch {
		case err != nil:
			return Schedule{}, invalid(ErrInvalidSchedule, "invalid schedule %q: %v", spec, err)
		case d < time.Second:
			return Schedule{}, invalid(ErrInvalidSchedule, "invalid schedule %q: the shortest interval is 1s", spec)
		case d%time.Second != 0:
			return Schedule{}, invalid(ErrInvalidSchedule, "invalid schedule %q: the interval must be whole seconds", spec)
		}
		return Schedule{spec: spec, loc: loc, every: d}, nil
	}
	cal, err := parseCron(trimmed)
	if err != nil {
		return Schedule{}, invalid(ErrInvalidSchedule, "invalid schedule %q: %s", spec, cronReason(trimmed, err))
	}
	ss, ok := cal.(*cron.SpecSchedule)
	if !ok {
		return Schedule{}, invalid(ErrInvalidSchedule, "invalid schedule %q: unsupported kind %T", spec, cal)
	}
	ss.Location = loc
	if ss.Next(neverRef).IsZero() {
		return Schedule{}, invalid(ErrInvalidSchedule, "invalid schedule %q: it never fires (no such date)", spec)
	}
	return Schedule{spec: spec, loc: loc, cal: ss}, nil
}

// neverRef is where ParseSchedule looks for a first tick: a schedule with none in the five
// years after it (a leap day included) has none at all, like "0 0 30 2 *".
var neverRef = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func parseCron(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot parse: %v", r)
		}
	}()
	return cronParser.Parse(spec)
}

// cronReason names the field a robfig/cron error is about: "end of range (61) above maximum
// (59): 61" becomes `minute field "61": end of range (61) above maximum (59)`.
func cronReason(spec string, err error) string {
	msg := err.Error()
	fields := strings.Fields(spec)
	names := []string{"minute", "hour", "day-of-month", "month", "day-of-week"}
	if len(fields) == 6 {
		names = append([]string{"second"}, names...)
	}
	i := strings.LastIndex(msg, ": ")
	if strings.HasPrefix(spec, "@") || len(fields) != len(names) || i < 0 {
		return msg
	}
	expr := msg[i+2:]
	for k, field := range fields {
		for _, part := range strings.Split(field, ",") {
			if part == expr {
				return fmt.Sprintf("%s field %q: %s", names[k], field, msg[:i])
			}
		}
	}
	return msg
}

// Next returns the first tick strictly after t, in t's location, or the zero time when
// the schedule does not fire within five years of t (robfig/cron's search limit).
func (s Schedule) Next(t time.Time) time.Time {
	if s.every > 0 {
		step := int64(s.every / time.Second)
		u := t.Unix() // floor: the sub-second part of a time is never negative
		q := u / step
		if u%step < 0 {
			q--
		}
		next := (q + 1) * step
		return time.Unix(next, 0).In(t.Location())
	}
	if s.cal == nil {
		return time.Time{}
	}
	return s.cal.Next(t)
}

// Spec returns the spec the schedule was parsed from.
func (s Schedule) Spec() string { return s.spec }

// Location returns the schedule's time zone.
func (s Schedule) Location() *time.Location { return s.loc }
