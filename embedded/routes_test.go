package embedded

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestRouteSetPrune(t *testing.T) {
	t0 := time.Unix(1000, 0)
	rs := routeSet{self: "10.0.0.1:6222", static: []string{"seed:6222"}, found: map[string]time.Time{}}
	if !rs.merge([]string{"10.0.0.1:6222", "10.0.0.2:6222", "seed:6222"}, t0) {
		t.Fatal("merge of a new address reported no change")
	}
	if got := rs.count(); got != 3 {
		t.Fatalf("count() = %d, want 3 (self, seed, 10.0.0.2)", got)
	}
	if rs.merge([]string{"10.0.0.2:6222"}, t0.Add(time.Second)) {
		t.Fatal("merge of a known address reported a change")
	}
	rs.merge([]string{"10.0.0.3:6222"}, t0.Add(time.Hour))
	if !rs.prune(t0.Add(time.Minute)) {
		t.Fatal("prune removed nothing")
	}
	want := []string{"10.0.0.1:6222", "10.0.0.3:6222", "seed:6222"}
	if got := rs.keys(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("keys() = %v, want %v", got, want)
	}
}

func TestRouteSetURLsHaveClusterSizeEntries(t *testing.T) {
	rs := routeSet{self: "10.0.0.1:6222", found: map[string]time.Time{}}
	str := func(size int) string {
		var hosts []string
		for _, u := range rs.urls(size) {
			hosts = append(hosts, u.Host)
		}
		return strings.Join(hosts, " ")
	}
	if got, want := str(3), "10.0.0.1:6222 10.0.0.1:6222 10.0.0.1:6222"; got != want {
		t.Errorf("alone, urls(3) = %s; want %s", got, want)
	}
	rs.merge([]string{"10.0.0.4:6222", "10.0.0.2:6222", "10.0.0.3:6222"}, time.Now())
	if got, want := str(3), "10.0.0.1:6222 10.0.0.2:6222 10.0.0.3:6222"; got != want {
		t.Errorf("with a surplus, urls(3) = %s; want %s", got, want)
	}
	if got := len(rs.urls(0)); got != 4 {
		t.Errorf("urls(0) has %d entries, want all 4", got)
	}

	// Ours is always among them, and the list is sorted.
	rs = routeSet{self: "10.0.0.9:6222", found: map[string]time.Time{}}
	rs.merge([]string{"10.0.0.4:6222", "10.0.0.2:6222", "10.0.0.3:6222"}, time.Now())
	if got, want := str(3), "10.0.0.2:6222 10.0.0.3:6222 10.0.0.9:6222"; got != want {
		t.Errorf("urls(3) = %s; want %s", got, want)
	}
}

func TestSelfAddr(t *testing.T) {
	ctx := context.Background()
	r := &fakeDNS{}
	r.add("127.0.0.1")

	wild := newSelfAddr(ctx, r, "0.0.0.0", 6222)
	if wild.key() != "127.0.0.1:6222" {
		t.Errorf("key() listening on 0.0.0.0 = %q, want 127.0.0.1:6222", wild.key())
	}
	if !wild.is(ctx, r, "127.0.0.1", 6222) {
		t.Error("127.0.0.1:6222 is not self when listening on 0.0.0.0:6222")
	}
	if wild.is(ctx, r, "127.0.0.1", 7222) {
		t.Error("another port is self")
	}
	if !wild.is(ctx, r, "coord.test", 6222) {
		t.Error("a name resolving to a local address is not self")
	}
	if wild.is(ctx, r, "no-such-host.invalid", 6222) {
		t.Error("an unresolvable name is self")
	}
	if h, err := os.Hostname(); err == nil && !wild.is(ctx, r, h, 6222) {
		t.Errorf("own host name %q is not self", h)
	}

	one := newSelfAddr(ctx, r, "127.0.0.2", 6222)
	if one.is(ctx, r, "127.0.0.3", 6222) {
		t.Error("another loopback address is self when listening on 127.0.0.2")
	}
	if !one.isIP("127.0.0.2") {
		t.Error("the listen address is not self")
	}
}
