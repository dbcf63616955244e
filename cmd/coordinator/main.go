// Command coordinator runs exactly-once workers and cluster-wide cron over NATS JetStream.
//
//	coordinator run [flags]        the daemon
//	coordinator status             workers, owners, tokens and nodes
//	coordinator events [--follow]  lifecycle events from the events stream
//	coordinator logs WORKER        a worker's output wherever it runs
//	coordinator call WORKER REQ    send a request to a worker wherever it runs
//	coordinator release WORKER     ask the owner to hand a worker over
//	coordinator drain NODE         move every worker off a node
//	coordinator jobs               cron jobs with next tick and last run
//	coordinator check --config F   validate a config file and exit
//	coordinator certs --dir D      make a CA and a TLS certificate for the embedded servers
//	coordinator completion SHELL   shell completion for bash, zsh or fish
//	coordinator version
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"

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
		{"status", "show workers (state, restarts, last exit), owners, tokens and nodes", statusCmd},
		{"events", "show lifecycle events (--follow to keep watching)", eventsCmd},
		{"logs", "show a worker's output wherever it runs (--follow to keep watching)", logsCmd},
		{"call", "send a request to WORKER wherever it runs and print the reply", callCmd},
		{"release", "ask the owner of WORKER to hand it over", releaseCmd},
		{"drain", "move every worker off NODE (--undo to let it claim again)", drainCmd},
		{"jobs", "list cron jobs; 'jobs NAME' shows its last runs; 'jobs run NAME [--wait]' runs one now", jobsCmd},
		{"check", "validate a config file (--config FILE) and exit", checkCmd},
		{"certs", "make a CA and a TLS certificate for the embedded servers (--dir DIR)", certsCmd},
		{"completion", "print a shell completion script: completion bash|zsh|fish", completionCmd},
		{"version", "print the version (--json for scripts)", versionCmd},
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
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	case "-version", "--version":
		return versionCmd(nil, stdout, stderr)
	}
	fmt.Fprintf(stderr, "coordinator: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: coordinator COMMAND [flags] [arguments]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.usage)
	}
	fmt.Fprintln(w, "\nRun 'coordinator COMMAND -h' for the flags and arguments of a command; 'coordinator --version' for the version.")
}

func versionCmd(args []string, stdout, stderr io.Writer) int {
	c := newCmd("version", "[--json]", "Print the version of this binary.", stdout, stderr)
	asJSON := c.Bool("json", false, `print {"version","go","os","arch"}`)
	pos, code := c.parse(args)
	if code >= 0 {
		return code
	}
	if len(pos) > 0 {
		return c.usageError(fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	if *asJSON {
		printJSON(stdout, map[string]string{"version": Version, "go": runtime.Version(), "os": runtime.GOOS, "arch": runtime.GOARCH})
		return 0
	}
	fmt.Fprintf(stdout, "coordinator %s\n", Version)
	return 0
}

// cmdline is a subcommand's flag set with its usage line: -h and --help print the usage
// to stdout and exit 0; a bad flag prints it to stderr and exits 2.
type cmdline struct {
	*flag.FlagSet
	name, args, desc string
	stdout, stderr   io.Writer
}

// newCmd returns the flag set of subcommand name; args names its positional arguments
// for the usage line, e.g. "[flags] WORKER".
func newCmd(name, args, desc string, stdout, stderr io.Writer) *cmdline {
	c := &cmdline{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), name: name, args: args, desc: desc, stdout: stdout, stderr: stderr}
	c.SetOutput(io.Discard)
	c.Usage = func() {}
	return c
}

func (c *cmdline) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: coordinator %s %s\n\n%s\n", c.name, c.args, c.desc)
	n := 0
	c.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nflags:")
		c.SetOutput(w)
		c.PrintDefaults()
		c.SetOutput(io.Discard)
	}
}

// parse parses flags wherever they stand among the positional arguments
// (`coordinator release billing --nats URL` as well as `release --nats URL billing`). It
// returns the positional arguments and -1, or the exit code when the command is done:
// 0 after -h/--help, 2 after a bad flag.
func (c *cmdline) parse(args []string) ([]string, int) {
	var pos []string
	for {
		if err := c.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.usage(c.stdout)
				return nil, 0
			}
			return nil, c.usageError(err.Error())
		}
		if c.NArg() == 0 {
			return pos, -1
		}
		pos = append(pos, c.Arg(0))
		args = c.Args()[1:]
	}
}

// usageError prints msg and the usage to stderr and returns 2.
func (c *cmdline) usageError(msg string) int {
	fmt.Fprintf(c.stderr, "coordinator %s: %s\n\n", c.name, msg)
	c.usage(c.stderr)
	return 2
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
