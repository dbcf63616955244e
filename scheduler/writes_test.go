package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetcoord/coordinator/internal/natstest"
)

// maxWritesPerTick bounds the messages the jobs stream stores for one tick of a job whose
// runs are shorter than the renew interval and do not overlap: the run lease's create and
// release and the server's expiry marker of it, the tick record's create and final write,
// and <job>.last.
const maxWritesPerTick = 6

// streamTally counts, from an ordered consumer of the jobs stream, the messages stored
// under each key of one job: writes, deletes and the server's expiry markers alike.
type streamTally struct {
	mu      sync.Mutex
	byKey   map[string]int
	lastFor map[int64]int  // <job>.last writes by the tick they copy (unix seconds)
	marked  map[string]int // expiry markers and deletes by key
}

func tallyJobStream(t *testing.T, srv *natstest.Server, job string) *streamTally {
	t.Helper()
	nc := srv.Connect()
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, "KV_t_jobs", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"$KV.t_jobs." + job + ".>"}, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		t.Fatal(err)
	}
	st := &streamTally{byKey: map[string]int{}, lastFor: map[int64]int{}, marked: map[string]int{}}
	prefix := "$KV.t_jobs."
	cc, err := c.Consume(func(m jetstream.Msg) {
		key := strings.TrimPrefix(m.Subject(), prefix)
		st.mu.Lock()
		defer st.mu.Unlock()
		st.byKey[key]++
		h := m.Headers()
		if h.Get("Nats-Marker-Reason") != "" || h.Get("KV-Operation") != "" {
			st.marked[key]++
			return
		}
		if key == lastKey(job) {
			var r Run
			if json.Unmarshal(m.Data(), &r) == nil {
				st.lastFor[r.Tick.Unix()]++
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return st
}

// writes returns the messages stored for tick key of job (record, run lease, the copies
// in <job>.last) and whether its run lease is gone (released and expired or deleted).
func (st *streamTally) writes(job string, tick int64) (int, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	key := job + "." + strconv.FormatInt(tick, 10)
	return st.byKey[key] + st.byKey[leaseKeyOf(key)] + st.lastFor[tick], st.marked[leaseKeyOf(key)] > 0
}

// TestWritesPerTick counts what one tick of a per-second job costs the jobs stream, on one
// node and on three, and bounds it.
func TestWritesPerTick(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		t.Run(fmt.Sprintf("%dnodes", nodes), func(t *testing.T) {
			t.Parallel()
			srv := natstest.Run(t)
			openStore(t, srv.Connect()) // the bucket exists before the tally watches it
			st := tallyJobStream(t, srv, "count")
			var l ledger
			var ns []*node
			for i := range nodes {
				name := string(rune('a' + i))
				ns = append(ns, startNode(t, srv, name, testOpts(), func(s *Scheduler) {
					mustAdd(t, s, "count", "* * * * * *", l.fn(name, nil))
				}))
			}
			waitFor(t, "six ticks", 30*time.Second, func() bool { return len(l.snapshot()) >= 6 })
			var ticks []int64
			for _, r := range l.snapshot() {
				ticks = append(ticks, r.tick.Time.Unix())
			}
			sort.Slice(ticks, func(a, b int) bool { return ticks[a] < ticks[b] })
			counted := ticks[1:5] // not the first, which may be a late start
			waitFor(t, "the counted ticks' run leases to go", 15*time.Second, func() bool {
				for _, tick := range counted {
					if _, gone := st.writes("count", tick); !gone {
						return false
					}
				}
				return true
			})
			for _, n := range ns {
				_ = n.s.Close()
			}
			total := 0
			for _, tick := range counted {
				w, _ := st.writes("count", tick)
				total += w
				if w > maxWritesPerTick {
					t.Errorf("tick %d: %d messages in the jobs stream, want at most %d", tick, w, maxWritesPerTick)
				}
			}
			t.Logf("%d node(s): %.1f messages in the jobs stream per tick", nodes, float64(total)/float64(len(counted)))
		})
	}
}
