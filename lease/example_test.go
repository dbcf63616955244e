package lease_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jetcoord/coordinator/lease"
)

// counter stands in for a KV entry written with compare-and-set.
type counter struct{ rev uint64 }

func (c *counter) Renew(_ context.Context, rev uint64) (uint64, bool, error) {
	if rev != c.rev {
		return 0, false, lease.ErrLost
	}
	c.rev++
	return c.rev, false, nil
}

func Example() {
	t := lease.Timing{TTL: 15 * time.Second, RenewDeadline: 8 * time.Second, FenceGrace: 6 * time.Second}
	if err := t.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	l, err := lease.Start(lease.Config{Name: "billing", Timing: t, Store: &counter{rev: 1}, Rev: 1, OnEnd: cancel})
	if err != nil {
		fmt.Println(err)
		return
	}
	// ... work under ctx until done; the watchdog gets l.Deadline() and t.Derive().FenceGrace ...
	_ = ctx
	rev := l.Stop() // then release the entry with a compare-and-set at rev
	fmt.Println(rev, t.Derive().RenewInterval, l.Err())
	// Output: 1 3s lease: stopped
}
