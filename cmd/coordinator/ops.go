package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jetcoord/coordinator/internal/config"
	"github.com/jetcoord/coordinator/ownership"
)

var getenv = os.Getenv

func releaseCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var conn natsFlags
	conn.register(fs, defaultCLIURL())
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: coordinator release [flags] WORKER")
		return 2
	}
	worker := pos[0]
	nc, st, err := cliConnect(&conn)
	if err != nil {
		fmt.Fprintf(stderr, "coordinator release: %v\n", err)
		return 1
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	owner, err := ownership.LookupIn(ctx, st.Workers, worker)
	if errors.Is(err, ownership.ErrNotOwned) {
		fmt.Fprintf(stderr, "coordinator release: worker %q has no owner right now\n", worker)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "coordinator release: %v\n", err)
		return 1
	}
	r, err := ctlCall(nc, ctlSubject(st.Namespace(), owner.Node, "release"), ctlRequest{Worker: worker}, 40*time.Second)
	if err != nil {
		fmt.Fprintf(stderr, "coordinator release: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, r.Info)
	return 0
}

func drainCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var conn natsFlags
	conn.register(fs, defaultCLIURL())
	undo := fs.Bool("undo", false, "stop draining: the node claims workers again")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: coordinator drain [--undo] [flags] NODE")
		return 2
	}
	nc, st, err := cliConnect(&conn)
	if err != nil {
		fmt.Fprintf(stderr, "coordinator drain: %v\n", err)
		return 1
	}
	defer nc.Close()
	on := !*undo
	r, err := ctlCall(nc, ctlSubject(st.Namespace(), pos[0], "drain"), ctlRequest{Drain: &on}, 10*time.Second)
	if err != nil {
		fmt.Fprintf(stderr, "coordinator drain: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, r.Info)
	return 0
}

func checkCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file to validate")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	if *path == "" && len(pos) == 1 {
		*path = pos[0]
	}
	if *path == "" {
		fmt.Fprintln(stderr, "usage: coordinator check --config FILE")
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok (%d workers, %d jobs)\n", *path, len(cfg.Workers), len(cfg.Jobs))
	return 0
}

func callCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var conn natsFlags
	conn.register(fs, defaultCLIURL())
	timeout := fs.Duration("timeout", 10*time.Second, "how long to keep trying while no node owns the worker")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 2 {
		fmt.Fprintln(stderr, "usage: coordinator call [flags] WORKER REQUEST   (REQUEST '-' reads stdin)")
		return 2
	}
	req := []byte(pos[1])
	if pos[1] == "-" {
		var err error
		if req, err = io.ReadAll(os.Stdin); err != nil {
			fmt.Fprintf(stderr, "coordinator call: reading stdin: %v\n", err)
			return 1
		}
	}
	nc, err := connectOnce(conn.toConfig())
	if err != nil {
		fmt.Fprintf(stderr, "coordinator call: %v\n", err)
		return 1
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	r, err := ownership.Call(ctx, nc, nsOrDefault(conn.namespace), pos[0], req)
	if err != nil {
		fmt.Fprintf(stderr, "coordinator call: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "answered by %s (token %d)\n", r.Node, r.Token)
	_, _ = stdout.Write(r.Data)
	return 0
}
