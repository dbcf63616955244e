package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jetcoord/coordinator/internal/config"
	"github.com/jetcoord/coordinator/ownership"
)

var getenv = os.Getenv

func releaseCmd(args []string, stdout, stderr io.Writer) int {
	fs := newCmd("release", "[flags] WORKER", "Ask the node that owns WORKER to hand it over: it stops the worker and releases the claim; another node (its preferred one) claims it.", stdout, stderr)
	var conn natsFlags
	conn.register(fs.FlagSet, defaultCLIURL())
	asJSON := fs.Bool("json", false, `print {"ok","worker","node","info"} or {"ok":false,"error"} as JSON`)
	pos, code := fs.parse(args)
	if code >= 0 {
		return code
	}
	if len(pos) != 1 {
		return fs.usageError("WORKER is required")
	}
	worker := pos[0]
	fail := func(err error) int { return cliFail(stdout, stderr, "release", *asJSON, err) }
	nc, st, err := cliConnect(&conn)
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	owner, err := ownership.LookupIn(ctx, st.Workers, worker)
	if errors.Is(err, ownership.ErrNotOwned) {
		return fail(fmt.Errorf("worker %q has no owner right now", worker))
	}
	if err != nil {
		return fail(err)
	}
	r, err := ctlCall(nc, ctlSubject(st.Namespace(), owner.Node, "release"), ctlRequest{Worker: worker}, 40*time.Second)
	if err != nil {
		return fail(err)
	}
	if *asJSON {
		printJSON(stdout, map[string]any{"ok": true, "worker": worker, "node": owner.Node, "info": r.Info})
		return 0
	}
	fmt.Fprintln(stdout, r.Info)
	return 0
}

func drainCmd(args []string, stdout, stderr io.Writer) int {
	fs := newCmd("drain", "[--undo] [flags] NODE", "Make NODE hand over all its workers and claim none until undrained (--undo).", stdout, stderr)
	var conn natsFlags
	conn.register(fs.FlagSet, defaultCLIURL())
	undo := fs.Bool("undo", false, "stop draining: the node claims workers again")
	asJSON := fs.Bool("json", false, `print {"ok","node","draining","info"} or {"ok":false,"error"} as JSON`)
	pos, code := fs.parse(args)
	if code >= 0 {
		return code
	}
	if len(pos) != 1 {
		return fs.usageError("NODE is required")
	}
	fail := func(err error) int { return cliFail(stdout, stderr, "drain", *asJSON, err) }
	nc, st, err := cliConnect(&conn)
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	on := !*undo
	r, err := ctlCall(nc, ctlSubject(st.Namespace(), pos[0], "drain"), ctlRequest{Drain: &on}, 10*time.Second)
	if err != nil {
		return fail(err)
	}
	if *asJSON {
		printJSON(stdout, map[string]any{"ok": true, "node": pos[0], "draining": on, "info": r.Info})
		return 0
	}
	fmt.Fprintln(stdout, r.Info)
	return 0
}

func checkCmd(args []string, stdout, stderr io.Writer) int {
	fs := newCmd("check", "--config FILE  (or: check FILE)", "Validate a config file: list every problem with its line and the fix, exit 1 if there is one.", stdout, stderr)
	path := fs.String("config", "", "config file to validate")
	asJSON := fs.Bool("json", false, `print {"ok","file","workers","jobs"} or {"ok":false,"file","error"} as JSON`)
	pos, code := fs.parse(args)
	if code >= 0 {
		return code
	}
	if *path == "" && len(pos) == 1 {
		*path = pos[0]
	}
	if *path == "" || len(pos) > 1 {
		return fs.usageError("one config file is required")
	}
	cfg, err := config.Load(*path)
	if *asJSON {
		if err != nil {
			printJSON(stdout, map[string]any{"ok": false, "file": *path, "error": err.Error()})
			return 1
		}
		printJSON(stdout, map[string]any{"ok": true, "file": *path, "workers": len(cfg.Workers), "jobs": len(cfg.Jobs)})
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok (%d workers, %d jobs)\n", *path, len(cfg.Workers), len(cfg.Jobs))
	return 0
}

func callCmd(args []string, stdout, stderr io.Writer) int {
	fs := newCmd("call", "[flags] WORKER REQUEST", "Send REQUEST (or stdin, with '-') to WORKER wherever it runs and print the reply.", stdout, stderr)
	var conn natsFlags
	conn.register(fs.FlagSet, defaultCLIURL())
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the reply, also while no node owns the worker (the owner gets this deadline)")
	asJSON := fs.Bool("json", false, `print {"ok","worker","node","token","reply"} or {"ok":false,"error"} as JSON`)
	pos, code := fs.parse(args)
	if code >= 0 {
		return code
	}
	if len(pos) != 2 {
		return fs.usageError("WORKER and REQUEST are required")
	}
	req := []byte(pos[1])
	if pos[1] == "-" {
		var err error
		if req, err = io.ReadAll(os.Stdin); err != nil {
			fmt.Fprintf(stderr, "coordinator call: reading stdin: %v\n", err)
			return 1
		}
	}
	fail := func(err error) int { return cliFail(stdout, stderr, "call", *asJSON, err) }
	c := conn.toConfig()
	nc, err := connectOnce(c)
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	var opts []ownership.CallOption
	if c.Domain != "" || c.APIPrefix != "" {
		// Replies are verified against the claim, read through the same JetStream API.
		st, err := openStore(nc, conn.namespace, c)
		if err != nil {
			return fail(err)
		}
		opts = append(opts, ownership.WithCallJetStream(st.JetStream()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	r, err := ownership.Call(ctx, nc, nsOrDefault(conn.namespace), pos[0], req, opts...)
	if err != nil {
		return fail(err)
	}
	if *asJSON {
		out := map[string]any{"ok": true, "worker": pos[0], "node": r.Node, "token": r.Token, "reply": string(r.Data)}
		if json.Valid(r.Data) && len(r.Data) > 0 {
			out["reply"] = json.RawMessage(r.Data)
		}
		printJSON(stdout, out)
		return 0
	}
	fmt.Fprintf(stderr, "answered by %s (token %d)\n", r.Node, r.Token)
	_, _ = stdout.Write(r.Data)
	return 0
}

// cliFail reports err for command name: as JSON {"ok":false,"error"} on stdout when asJSON,
// and always on stderr; it returns 1.
func cliFail(stdout, stderr io.Writer, name string, asJSON bool, err error) int {
	if asJSON {
		printJSON(stdout, map[string]any{"ok": false, "error": err.Error()})
	}
	fmt.Fprintf(stderr, "coordinator %s: %v\n", name, err)
	return 1
}
