// Command coordinator runs exactly-once workers and cluster-wide cron over NATS JetStream.
//
//	coordinator run [flags]        the daemon
//	coordinator status             workers, owners, tokens and nodes
//	coordinator events [--follow]  lifecycle events from the events stream
//	coordinator call WORKER REQ    send a request to a worker wherever it runs
//	coordinator release WORKER     ask the owner to hand a worker over
//	coordinator drain NODE         move every worker off a node
//	coordinator jobs               cron jobs with next tick and last run
//	coordinator check --config F   validate a config file and exit
//	coordinator certs --dir D      make a CA and a TLS certificate for the embedded servers
//	coordinator version
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/jetcoord/coordinator/supervise"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

func main() {
	supervise.MaybeRunWatchdog() // this binary is also the watchdog of supervised commands
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

type command struct {
	name, usage string
	run         func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "run the daemon", runCmd},
		{"status", "show workers, owners, tokens and nodes", statusCmd},
		{"events", "show lifecycle events (--follow to keep watching)", eventsCmd},
		{"call", "send a request to WORKER wherever it runs and print the reply", callCmd},
		{"release", "ask the owner of WORKER to hand it over", releaseCmd},
		{"drain", "move every worker off NODE (--undo to let it claim again)", drainCmd},
		{"jobs", "list cron jobs; 'jobs run NAME' triggers one run now", jobsCmd},
		{"check", "validate a config file (--config FILE) and exit", checkCmd},
		{"certs", "make a CA and a TLS certificate for the embedded servers (--dir DIR)", certsCmd},
		{"version", "print the version", versionCmd},
	}
}

func cli(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "coordinator: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: coordinator COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.usage)
	}
	fmt.Fprintln(w, "\nRun 'coordinator COMMAND -h' for the flags of a command.")
}

func versionCmd(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "coordinator %s\n", Version)
	return 0
}

// parseArgs parses flags wherever they stand among the positional arguments
// (`coordinator release billing --nats URL` as well as `release --nats URL billing`).
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
