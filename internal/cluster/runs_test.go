package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const ms = Mono(time.Millisecond)

func writeRuns(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), RunsFile)
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadRuns(t *testing.T) {
	p := writeRuns(t,
		"start w a 5 1000000000 10",
		"beat w a 5 1100000000 10",
		"start v b 6 1150000000 11",
		"beat w a 5 1200000000 10",
		"stop w a 5 1250000000 10",
		"beat v b 6 1250000000 11",
		"OVERLAP w c 7 1300000000 12",
		"start w b 8 1400000000 13",
		"beat w b 8 14", // half-written last line: ignored
	)
	runs, err := ReadRuns(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 4 {
		t.Fatalf("got %d runs, want 4: %v", len(runs), runs)
	}
	w1 := runs[0]
	if w1.Worker != "w" || w1.Node != "a" || w1.Token != 5 || w1.PID != 10 || !w1.Stopped ||
		w1.Start != 1000*ms || w1.End != 1250*ms || w1.LastBeat != 1200*ms {
		t.Errorf("first run = %+v", w1)
	}
	v := runs[1]
	if v.Worker != "v" || v.Stopped || v.End != 1350*ms {
		t.Errorf("killed run should end a beat after its last beat: %+v", v)
	}
	if o := runs[2]; !o.Overlap || o.Node != "c" {
		t.Errorf("overlap line = %+v", o)
	}
	if w2 := runs[3]; w2.End != 1500*ms || w2.LastBeat != 0 {
		t.Errorf("run without beats should end a beat after its start: %+v", w2)
	}
}

// TestReadRunsKilledEndsAtNextStart: a SIGKILLed copy's estimated end (last beat + a beat
// interval) is cut at the next copy's start, which proves the lock was free.
func TestReadRunsKilledEndsAtNextStart(t *testing.T) {
	p := writeRuns(t,
		"start w a 1 1000000000 10",
		"beat w a 1 1100000000 10",
		"start w b 2 1140000000 11", // a was SIGKILLed just after its beat
		"beat w b 2 1240000000 11",
		"",
	)
	runs, err := ReadRuns(p)
	if err != nil {
		t.Fatal(err)
	}
	if runs[0].End != 1140*ms {
		t.Errorf("killed run ends at %d, want the next start %d", runs[0].End, 1140*ms)
	}
	if vs := CheckRuns(runs); len(vs) != 0 {
		t.Errorf("violations %v", vs)
	}
}

// TestReadRunsUnlockedCopy: a copy that ran although the lock was held (an OVERLAP line,
// then its start) does not cut the holder's estimated end, and the checker reports the
// overlap as one on one node, with the holder of the lock.
func TestReadRunsUnlockedCopy(t *testing.T) {
	p := writeRuns(t,
		"start w a 1 1000000000 10",
		"beat w a 1 1100000000 10",
		"OVERLAP w a 2 1120000000 11",
		"start w a 2 1120000000 11",
		"beat w a 1 1200000000 10", // the holder beats on: two copies ran on node a
		"beat w a 2 1220000000 11",
		"start w b 3 1500000000 12",
		"term w b 3 1600000000 12",
		"beat w b 3 1700000000 12",
		"stop w b 3 1900000000 12",
		"",
	)
	runs, err := ReadRuns(p)
	if err != nil {
		t.Fatal(err)
	}
	w := RunsOf(runs, "w")
	if len(w) != 3 || w[0].End != 1300*ms || !w[1].Unlocked || w[0].Unlocked {
		t.Fatalf("runs %v; want the holder to end at 1300ms and the second copy unlocked", w)
	}
	if w[2].Signalled != 1600*ms || w[2].StopTook() != 300*time.Millisecond {
		t.Errorf("term line: signalled %d, stop took %v", w[2].Signalled, w[2].StopTook())
	}
	vs := CheckRuns(runs)
	kinds := map[string]int{}
	for _, v := range vs {
		kinds[v.Kind]++
		if !v.SameNode() || !strings.Contains(v.Detail, "on one node") {
			t.Errorf("%v: want an overlap on one node", v)
		}
		if v.Kind == ViolationLock && v.B.PID != 10 {
			t.Errorf("%v: the lock was held by pid 10", v)
		}
		if v.Kind == ViolationOverlap && v.Together() != 180*time.Millisecond {
			t.Errorf("%v: together %v, want 180ms", v, v.Together())
		}
	}
	if kinds[ViolationOverlap] != 1 || kinds[ViolationLock] != 1 || len(vs) != 2 {
		t.Errorf("violations %v, want one overlap and one lock", vs)
	}
}

func TestReadRunsMissingAndMalformed(t *testing.T) {
	runs, err := ReadRuns(filepath.Join(t.TempDir(), "none.log"))
	if err != nil || runs != nil {
		t.Fatalf("missing file: %v, %v", runs, err)
	}
	for _, bad := range []string{
		"start w a 5 1000\n",
		"start w a x 1000 1\n",
		"beat w a 5 1000 1\n",
		"hello w a 5 1000 1\n",
	} {
		if _, err := ReadRuns(writeRuns(t, bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestCheckRuns(t *testing.T) {
	run := func(node string, token uint64, start, end Mono) Run {
		return Run{Worker: "w", Node: node, Token: token, Start: start * ms, End: end * ms, Stopped: true}
	}
	tests := []struct {
		name  string
		runs  []Run
		kinds []string
	}{
		{"clean handover", []Run{run("a", 1, 0, 100), run("b", 2, 150, 300)}, nil},
		{"touching ends", []Run{run("a", 1, 0, 100), run("b", 2, 100, 300)}, nil},
		{"restart in one term", []Run{run("a", 1, 0, 100), run("a", 1, 600, 700)}, nil},
		{"overlap", []Run{run("a", 1, 0, 100), run("b", 2, 50, 300)}, []string{ViolationOverlap}},
		{"overlap on one node", []Run{run("a", 1, 0, 100), run("a", 2, 50, 300)}, []string{ViolationOverlap}},
		{"contained", []Run{run("a", 1, 0, 1000), run("b", 2, 100, 200), run("c", 3, 300, 400)},
			[]string{ViolationOverlap, ViolationOverlap}},
		{"token backwards", []Run{run("a", 5, 0, 100), run("b", 4, 200, 300)}, []string{ViolationToken}},
		{"same token elsewhere", []Run{run("a", 5, 0, 100), run("b", 5, 200, 300)}, []string{ViolationToken}},
		{"lock refused", []Run{run("a", 1, 0, 100), {Worker: "w", Node: "b", Token: 2, Start: 50 * ms, End: 50 * ms, Overlap: true}},
			[]string{ViolationLock}},
		{"other workers do not mix", []Run{run("a", 9, 0, 100), {Worker: "v", Node: "b", Token: 1, Start: 50 * ms, End: 80 * ms}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs := CheckRuns(tt.runs)
			var kinds []string
			for _, v := range vs {
				kinds = append(kinds, v.Kind)
				if v.String() == "" {
					t.Error("empty String()")
				}
			}
			if strings.Join(kinds, ",") != strings.Join(tt.kinds, ",") {
				t.Errorf("violations %v, want kinds %v", vs, tt.kinds)
			}
		})
	}
}

func TestGaps(t *testing.T) {
	runs := []Run{
		{Worker: "w", Node: "a", Start: 0, End: 100 * ms},
		{Worker: "w", Node: "b", Start: 350 * ms, End: 1000 * ms},
		{Worker: "w", Node: "c", Start: 400 * ms, End: 500 * ms}, // inside b's run
		{Worker: "w", Node: "c", Start: 1100 * ms, End: 1200 * ms},
		{Worker: "w", Node: "x", Start: 200 * ms, End: 200 * ms, Overlap: true},
		{Worker: "v", Node: "a", Start: 0, End: 100 * ms},
	}
	g := Gaps(runs)
	if d := g["w"].Duration(); d != 250*time.Millisecond {
		t.Errorf("gap of w = %v, want 250ms (%+v)", d, g["w"])
	}
	if g["w"].Before.Node != "a" || g["w"].After.Node != "b" {
		t.Errorf("gap of w between %s and %s, want a and b", g["w"].Before.Node, g["w"].After.Node)
	}
	if d := g["v"].Duration(); d != 0 {
		t.Errorf("gap of v = %v, want 0", d)
	}
}

func TestMonoNow(t *testing.T) {
	a := MonoNow()
	b := MonoNow()
	if b < a || a <= 0 {
		t.Fatalf("MonoNow went backwards or is not positive: %d then %d", a, b)
	}
	if d := a.Add(time.Second).Sub(a); d != time.Second {
		t.Fatalf("Add/Sub: %v", d)
	}
}
