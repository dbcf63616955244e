package scheduler

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("bad time %q: %v", s, err)
	}
	return v
}

// The schedule math, from strings, as robfig/cron's spec_test.go does it. Times carry their
// offset, so each row also says which side of a DST change a tick is on.
func TestScheduleNext(t *testing.T) {
	tests := []struct {
		spec, tz, from, want string
	}{
		// Seconds field, minutes, ranges and steps.
		{"* * * * * *", "", "2026-01-01T00:00:00.5Z", "2026-01-01T00:00:01Z"},
		{"* * * * * *", "", "2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"},
		{"*/15 * * * * *", "", "2026-01-01T00:00:14Z", "2026-01-01T00:00:15Z"},
		{"0 */15 * * * *", "", "2026-07-09T14:59:59Z", "2026-07-09T15:00:00Z"},
		{"*/15 * * * *", "", "2026-07-09T23:46:00Z", "2026-07-10T00:00:00Z"},
		{"0 9 * * MON-FRI", "", "2026-01-02T09:00:00Z", "2026-01-05T09:00:00Z"}, // Fri → Mon
		{"0 0 29 2 *", "", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z"},      // leap day
		{"@hourly", "", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"},
		{"@daily", "America/New_York", "2026-01-01T12:00:00-05:00", "2026-01-02T00:00:00-05:00"},
		{"0 9 * * *", "Asia/Kolkata", "2026-01-01T09:00:00+05:30", "2026-01-02T09:00:00+05:30"},

		// Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST. 02:30 does not exist that
		// day: a daily 02:30 job skips it (robfig/cron's behaviour).
		{"30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00+01:00", "2026-03-30T02:30:00+02:00"},
		{"0 * * * *", "Europe/Berlin", "2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00"},
		// Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET. 02:30 happens twice: the job
		// fires at both, an hour apart; they are two ticks with two claim keys.
		{"30 2 * * *", "Europe/Berlin", "2026-10-25T00:00:00+02:00", "2026-10-25T02:30:00+02:00"},
		{"30 2 * * *", "Europe/Berlin", "2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00"},
		{"30 2 * * *", "Europe/Berlin", "2026-10-25T02:30:00+01:00", "2026-10-26T02:30:00+01:00"},
		{"0 * * * *", "Europe/Berlin", "2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"},
		{"0 * * * *", "Europe/Berlin", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"},
		// The same in New York (robfig/cron's own cases, 2012).
		{"0 0 2 * * *", "America/New_York", "2012-03-11T00:00:00-05:00", "2012-03-12T02:00:00-04:00"},
		{"0 0 1 * * *", "America/New_York", "2012-11-04T01:00:00-04:00", "2012-11-04T01:00:00-05:00"},

		// @every counts from the Unix epoch, not from when a process started, and ignores the
		// zone: every node computes the same ticks.
		{"@every 1s", "", "2026-01-01T12:00:00.3Z", "2026-01-01T12:00:01Z"},
		{"@every 1s", "", "2026-01-01T12:00:01Z", "2026-01-01T12:00:02Z"},
		{"@every 7s", "", "1970-01-01T00:01:40Z", "1970-01-01T00:01:45Z"},  // 100 → 105
		{"@every 10s", "", "1969-12-31T23:59:45Z", "1969-12-31T23:59:50Z"}, // −15 → −10
		{"@every 90m", "", "2026-01-01T00:10:00Z", "2026-01-01T01:30:00Z"},
		{"@every 1h", "Europe/Berlin", "2026-01-01T00:10:00+01:00", "2026-01-01T00:00:00Z"},
	}
	for _, tt := range tests {
		var loc *time.Location
		if tt.tz != "" {
			var err error
			if loc, err = time.LoadLocation(tt.tz); err != nil {
				t.Fatal(err)
			}
		}
		s, err := ParseSchedule(tt.spec, loc)
		if err != nil {
			t.Errorf("ParseSchedule(%q, %s): %v", tt.spec, tt.tz, err)
			continue
		}
		got := s.Next(mustTime(t, tt.from))
		if want := mustTime(t, tt.want); !got.Equal(want) {
			t.Errorf("%q in %s after %s = %s, want %s", tt.spec, tt.tz, tt.from,
				got.Format(time.RFC3339), want.Format(time.RFC3339))
		}
	}
}

func TestParseScheduleRejects(t *testing.T) {
	tests := []struct {
		spec string
		loc  *time.Location
		kind error
		want string
	}{
		{"61 * * * *", nil, ErrInvalidSchedule, `scheduler: invalid schedule "61 * * * *": minute field "61": end of range (61) above maximum (59)`},
		{"0 0 25 * * *", nil, ErrInvalidSchedule, `hour field "25"`},
		{"* * *", nil, ErrInvalidSchedule, "expected 5 to 6 fields, found 3"},
		{"", nil, ErrInvalidSchedule, "empty"},
		{"@bogus", nil, ErrInvalidSchedule, "unrecognized descriptor"},
		{"@every 500ms", nil, ErrInvalidSchedule, "shortest interval is 1s"},
		{"@every 1.5s", nil, ErrInvalidSchedule, "whole seconds"},
		{"@every soon", nil, ErrInvalidSchedule, `invalid duration "soon"`},
		{"0 0 30 2 *", nil, ErrInvalidSchedule, "never fires"},
		{"CRON_TZ=Europe/Berlin 0 * * * *", nil, ErrInvalidSchedule, `pass the zone "Europe/Berlin" with WithTimeZone`},
		{"0 * * * *", time.Local, ErrInvalidTimeZone, "may differ between nodes"},
	}
	for _, tt := range tests {
		_, err := ParseSchedule(tt.spec, tt.loc)
		if err == nil || !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseSchedule(%q) = %v, want %v containing %q", tt.spec, err, tt.kind, tt.want)
		}
	}
}

func TestLeaseKeyParsing(t *testing.T) {
	tests := []struct {
		job, key, want string
	}{
		{"a", "a.1767225600.run", "a.1767225600"},
		{"a", "a.1767225600-manual.run", "a.1767225600-manual"},
		{"a.b", "a.b.5.run", "a.b.5"},
		{"a", "a.b.5.run", ""}, // job "a.b"'s lease
		{"a", "a.last", ""},
		{"a", "a.x.run", ""},
	}
	for _, tt := range tests {
		got, ok := parseLeaseKey(tt.job, tt.key)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("parseLeaseKey(%q, %q) = %q, %v; want %q", tt.job, tt.key, got, ok, tt.want)
		}
	}
}
