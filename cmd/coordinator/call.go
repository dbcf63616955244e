package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/jetcoord/coordinator/internal/config"
	"github.com/jetcoord/coordinator/ownership"
)

// callTimeout bounds one request to a supervised worker's call command.
const callTimeout = 30 * time.Second

// callBridge answers requests to a supervised worker by running its call command with the
// request on stdin; stdout is the reply, a failure (non-zero exit, timeout) an error with
// the command's stderr. The command runs only while this node owns the worker and is killed
// when the lease ends. A per-request command suits shell-level users: any language, no
// protocol to build into the long-running process, and nothing to clean up between calls.
func (d *daemon) callBridge(w config.Worker) ownership.Handler {
	return func(ctx context.Context, lease *ownership.Lease, req []byte) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, w.Call[0], w.Call[1:]...)
		cmd.Dir = w.Dir
		cmd.Env = append(os.Environ(), envList(w.Env)...)
		cmd.Env = append(cmd.Env, "COORD_WORKER="+w.Name, "COORD_NODE="+d.cfg.Node.Name,
			fmt.Sprintf("COORD_TOKEN=%d", lease.Token()), "COORD_CALL=1")
		cmd.Stdin = bytes.NewReader(req)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = time.Second
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(stderr.String())
			if ctx.Err() != nil {
				return nil, fmt.Errorf("call command did not answer: %w", ctx.Err())
			}
			if msg == "" {
				return nil, fmt.Errorf("call command failed: %v", err)
			}
			return nil, fmt.Errorf("call command failed: %v: %s", err, msg)
		}
		return stdout.Bytes(), nil
	}
}
