package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/jetcoord/coordinator/internal/config"
)

// jobRunner runs the config file's cron jobs. (The scheduler is wired in by the
// "Scheduler" issue; until then jobs in the file are refused at start.)
type jobRunner struct{}

func startJobs(ctx context.Context, d *daemon, jobs []config.Job) (*jobRunner, error) {
	if len(jobs) > 0 {
		return nil, fmt.Errorf("cron jobs are not supported by this build yet (%d in the config)", len(jobs))
	}
	return &jobRunner{}, nil
}

func (j *jobRunner) reload(ctx context.Context, jobs []config.Job) int { return 0 }
func (j *jobRunner) close()                                            {}

func jobsCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fmt.Fprintln(stderr, "coordinator jobs: not available in this build yet")
	return 1
}
