package scheduler

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every node computes ticks from the zone data embedded in the binary (issue 12, case 6):
// a machine whose own database says something else — here ZONEINFO points at one whose
// Europe/Berlin is really Asia/Tokyo, as a stale or broken system tzdata could — computes
// the same ticks as any other. The check runs in a child process, because the time package
// reads ZONEINFO once per process.
func TestTimeZoneIgnoresTheMachineDatabase(t *testing.T) {
	if os.Getenv("SCHEDULER_TZ_CHILD") != "" {
		var o jobOptions
		if err := WithTimeZone("Europe/Berlin")(&o); err != nil {
			t.Fatal(err)
		}
		s, err := ParseSchedule("0 0 9 * * *", o.loc)
		if err != nil {
			t.Fatal(err)
		}
		next := s.Next(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC))
		if want := time.Date(2026, 7, 1, 7, 0, 0, 0, time.UTC); !next.Equal(want) {
			t.Fatalf("09:00 Europe/Berlin on 2026-07-01 is %v UTC by this node, want %v", next.UTC(), want)
		}
		return
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "Europe"), 0o755); err != nil {
		t.Fatal(err)
	}
	tokyo, err := os.ReadFile("/usr/share/zoneinfo/Asia/Tokyo")
	if err != nil {
		t.Skip("no system zone database to doctor:", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Europe", "Berlin"), tokyo, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTimeZoneIgnoresTheMachineDatabase$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SCHEDULER_TZ_CHILD=1", "ZONEINFO="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("with the machine's Europe/Berlin doctored: %v\n%s", err, out)
	}
}
