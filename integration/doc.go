// Package integration tests the coordinator as it runs in production: real coordinator
// processes on loopback, three nodes forming one embedded NATS cluster (or joining an
// external one), supervised commands under their watchdogs. The tests kill, terminate and
// pause the processes for real, cut a node off from NATS, and check with the recorder
// (internal/cluster) that no worker ever ran twice at once, that fencing tokens only grow,
// and that workers come back.
//
// TestMain builds the coordinator once (internal/cluster.Build). Run all, or one:
//
//	go test ./integration/ -v
//	go test ./integration/ -run TestOwnerLoss -v -count=1
//	go test ./integration/ -run 'TestOwnerLoss/term' -v -count=1
//	go test -race ./integration/ -count=1          # the whole package, a few minutes
//
// The tests, one cluster each:
//
//	TestColdStart                        3 nodes from nothing to ready; a worker runs, one copy, and settles
//	TestOwnerLoss/kill                   SIGKILL the owner: takeover with a larger token, its command gone
//	TestOwnerLoss/kill_stream_leader     the same when the owner also leads the workers stream
//	TestOwnerLoss/term                   SIGTERM the owner: handoff in milliseconds, clean stop
//	TestPauseOwner                       SIGSTOP the owner past its TTL, SIGCONT; COORD_PAUSES times
//	TestPauseStubbornOwner               the same with a command that ignores SIGTERM (SIGKILL at the fence)
//	TestResumedNodeNoFalseNameClash      a resumed node must not claim its name is used twice
//	TestKillWorkersStreamLeader          SIGKILL the KV_coord_workers leader with 6 workers: pauses, no overlap
//	TestExternalNATS                     3 coordinators on an existing 3-server NATS (--nats); kill the owner
//	TestExternalCutOff                   an owner's NATS connection goes silent: fenced, taken over, rejoins
//	TestExternalStoreSurvivesServerLoss  losing 1 of 3 NATS servers must not stop the cluster
//	TestStatusShape                      status --json decodes strictly into cluster.Status; values agree
//	TestReleaseAndDrain                  coordinator release / drain / drain --undo
//	TestCommandDiesWithCoordinator       SIGKILL the coordinator: every process below it is gone
//	TestFailoverFigures                  figures only, with COORD_FIGURES=N
//	TestWholeClusterStop                 SIGTERM all three at once: every node exits within seconds
//	TestDrainSurvivesRestart             a drained node restarts drained until drain --undo
//	TestFormationProgress                the log and /readyz say which servers are missing; node.joined of all
//	TestStreamLeaderStop                 SIGTERM of the workers stream leader: the write gap of another node
//	TestHandoffLegs                      SIGTERM → old exit, old exit → new start (COORD_HANDOFFS samples)
//	TestTermRightAfterFormation          SIGTERM of the owner right after formation (COORD_FRESH clusters)
//
// The timings each test measures (kill → running elsewhere, SIGTERM → elsewhere, cold
// start, pause → fence) are logged with t.Logf: run with -v to see them. Tests use a lease
// TTL of 2–3 s and generous bounds; they never assert a speed.
//
// Environment:
//
//	COORD_PAUSES=20     pauses in TestPauseOwner (default 3)
//	COORD_FIGURES=10    run TestFailoverFigures: that many kills and SIGTERMs at TTL 2s and 5s
//	COORD_HANDOFFS=20   samples in TestHandoffLegs (default 3)
//	COORD_FRESH=10      fresh clusters in TestTermRightAfterFormation (default 2; 10 take ~80 s)
//	CLUSTER_KEEP=1      keep a failed test's cluster directory (logs, runs.log)
//
// The coordinators never see the test's COORD_* variables.
package integration
