// Package cluster runs real coordinator processes on loopback for tests and for the chaos
// suite, and checks what their supervised commands did.
//
//	bins, _ := cluster.Build(dir)                 // once per process: coordinator, recorder, reaper
//	c, err := cluster.Start(t, cluster.Options{   // 3 nodes, free ports, own data dirs, JSON logs
//		TTL:     2 * time.Second,
//		Workers: []cluster.WorkerSpec{{Name: "billing"}}, // runs the recorder
//	})
//	owner, _ := c.WaitOwner("billing", time.Minute, nil)
//	c.NodeByName(owner.Node).Kill()               // SIGKILL; also Term, Stop/Cont, Restart, Reload
//	runs, _ := c.Runs()
//	for _, v := range cluster.CheckRuns(runs) { t.Error(v) }
//
// # Processes
//
// Each coordinator runs under a small reaper process (internal/cluster/reaper) in its own
// process group, so a Ctrl-C in the test's terminal reaches none of them. The reaper is a
// child subreaper: when a coordinator dies, its watchdogs and their commands become the
// reaper's children and are reaped there (the host's init may not reap, and a zombie
// would still answer kill(pid, 0)). Closing the reaper's stdin — Close does it, and so
// does the death of the test process, Ctrl-C and test timeouts included — makes it
// SIGKILL the coordinator and everything below it. The coordinator itself stays an
// unreaped child until then, so its pid can be signalled safely: Kill, Term, Stop and Cont
// go to that pid only, never to a group, so a paused coordinator's watchdogs keep running.
//
// # Ports
//
// Client, route and HTTP ports are drawn below the kernel's ephemeral range, and each is
// reserved with an flock on $TMPDIR/coordinator-cluster-ports/<port> until Close: clusters
// started at once, in one test binary or in several, never share a port, and no outgoing
// connection takes one before its node binds it.
//
// # Recorder
//
// A WorkerSpec without a Command runs the recorder (internal/cluster/recorder): it takes an
// flock on the worker's lock file, or writes an OVERLAP line and exits 3 when another copy
// holds it (with RECORDER_ON_OVERLAP=run it runs on regardless), and writes start, beat
// (every 100 ms) and stop lines with CLOCK_MONOTONIC stamps to the cluster's runs.log;
// RECORDER_STOP_DELAY makes its stop take a while. ReadRuns turns the log into Runs;
// CheckRuns finds overlapping runs (Violation.SameNode tells two copies under one
// coordinator from copies on two nodes), refused locks with the copy that held them, and
// fencing tokens that went backwards; Gaps finds the longest time each worker ran nowhere. Mono stamps from MonoNow compare directly with the
// recorder's, so a test measures, say, the time from a kill to the next start.
//
// # Without testing
//
// Start takes a TB (Helper, Logf, Cleanup). A plain program uses New, StartAll and
// WaitReady, and calls Close at the end.
//
// Nothing here sleeps as synchronisation: WaitFor, WaitReady, WaitRun and WaitOwner poll
// until a deadline.
package cluster
