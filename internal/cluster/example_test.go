package cluster_test

import (
	"fmt"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// A plain program (the chaos suite) uses New and Close; tests use Start(t, …), which
// cleans up by itself. Compiled, not run: it starts real processes.
func ExampleNew() {
	c, err := cluster.New(cluster.Options{TTL: 2 * time.Second, Workers: []cluster.WorkerSpec{{Name: "billing"}}})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	if err := c.StartAll(); err != nil {
		panic(err)
	}
	r, _ := c.WaitRun("billing", time.Minute, nil) // the recorder's first start
	killed := cluster.MonoNow()
	_ = c.NodeByName(r.Node).Kill()
	next, _ := c.WaitRun("billing", time.Minute, func(x cluster.Run) bool { return x.Start > killed })
	runs, _ := c.Runs()
	fmt.Println(next.Start.Sub(killed), cluster.CheckRuns(runs))
}
