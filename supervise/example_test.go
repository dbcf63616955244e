package supervise_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jetcoord/coordinator/supervise"
)

// fixedLease stands in for an ownership lease whose deadline never moves.
type fixedLease struct{ deadline time.Time }

func (l fixedLease) Token() uint64                          { return 1 }
func (l fixedLease) Deadline() (time.Time, <-chan struct{}) { return l.deadline, nil }

func Example() {
	// In the program's main, first thing: supervise.MaybeRunWatchdog()
	// (this package's TestMain does it for the example).
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: noTime}))
	err := supervise.Run(context.Background(), supervise.Spec{
		Name:    "greeter",
		Command: "echo",
		Args:    []string{"hello"},
		Logger:  log,
	}, fixedLease{deadline: time.Now().Add(time.Minute)})
	fmt.Println("err:", err)
	// Output:
	// level=INFO msg=hello worker=greeter stream=stdout
	// err: <nil>
}
