package integration

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// TestFailoverFigures measures, at TTL 2s and 5s, how long a worker is down when its
// owner is SIGKILLed (with the workers stream led by another node, and by the owner
// itself) and when it is SIGTERMed. It only logs figures; set COORD_FIGURES=N for N rounds
// of each (it takes several minutes).
func TestFailoverFigures(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("COORD_FIGURES"))
	if rounds <= 0 {
		t.Skip("set COORD_FIGURES=N to measure N rounds of kill and SIGTERM failovers")
	}
	for _, ttl := range []time.Duration{2 * time.Second, 5 * time.Second} {
		t.Run(ttl.String(), func(t *testing.T) {
			c := startCluster(t, cluster.Options{TTL: ttl, Workers: recorded("w"), LogLevel: "info"})
			var kill, killLeader, term []time.Duration
			for i := 0; i < 3*rounds; i++ {
				mode := i % 3 // 0: kill, owner does not lead; 1: kill, owner leads; 2: SIGTERM
				settle(t, c, "w")
				r1, _ := currentRun(c, "w")
				owner := c.NodeByName(r1.Node)
				leader := otherThan(c, owner)
				if mode == 1 {
					leader = owner
				}
				if mode < 2 {
					if err := c.MoveStreamLeader(c.WorkersStream(), leader.Name(), time.Minute); err != nil {
						t.Fatal(err)
					}
				}
				t0 := cluster.MonoNow()
				var err error
				if mode < 2 {
					err = owner.Kill()
				} else {
					_, err = owner.Term()
				}
				if err != nil {
					t.Fatal(err)
				}
				r2, err := c.WaitRun("w", ttl+takeoverTimeout, func(r cluster.Run) bool { return r.Start > t0 })
				if err != nil {
					t.Fatal(err)
				}
				d := r2.Start.Sub(t0)
				switch mode {
				case 0:
					kill = append(kill, d)
				case 1:
					killLeader = append(killLeader, d)
				case 2:
					term = append(term, d)
				}
				if err := owner.Start(); err != nil {
					t.Fatal(err)
				}
				if err := owner.WaitReady(readyTimeout); err != nil {
					t.Fatal(err)
				}
			}
			checkRuns(t, c)
			t.Logf("TTL %v: SIGKILL owner → running elsewhere (stream led elsewhere): %s", ttl, summary(kill))
			t.Logf("TTL %v: SIGKILL owner → running elsewhere (owner led the stream): %s", ttl, summary(killLeader))
			t.Logf("TTL %v: SIGTERM owner → running elsewhere: %s", ttl, summary(term))
		})
	}
}
