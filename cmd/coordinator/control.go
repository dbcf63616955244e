package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// The control protocol: operator commands send a JSON request to the node concerned on
// <ns>.ctl.<node>.<op> and get a JSON reply.
type ctlRequest struct {
	Worker string `json:"worker,omitempty"`
	Drain  *bool  `json:"drain,omitempty"`
	// Wait, for trigger: reply when the run has ended, with its jobResult as Info.
	Wait bool `json:"wait,omitempty"`
}

type ctlReply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	Info  string `json:"info,omitempty"`
}

func ctlSubject(ns, node, op string) string { return ns + ".ctl." + node + "." + op }

type control struct {
	sub *nats.Subscription
	wg  sync.WaitGroup
}

func startControl(d *daemon) (*control, error) {
	subj := ctlSubject(d.cfg.Namespace, d.cfg.Node.Name, "*")
	c := &control{}
	sub, err := d.nc.Subscribe(subj, func(m *nats.Msg) {
		// Each request on its own: `jobs run --wait` holds its reply until the run ends.
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			var req ctlRequest
			reply := ctlReply{OK: true}
			if err := json.Unmarshal(m.Data, &req); err != nil {
				reply = ctlReply{Error: "request is not JSON: " + err.Error()}
			} else if err := d.handleControl(m.Subject[len(subj)-1:], req, &reply); err != nil {
				reply = ctlReply{Error: err.Error()}
			}
			b, _ := json.Marshal(reply)
			_ = m.Respond(b)
		}()
	})
	if err != nil {
		return nil, fmt.Errorf("subscribing to control requests: %w", err)
	}
	c.sub = sub
	return c, nil
}

func (d *daemon) handleControl(op string, req ctlRequest, reply *ctlReply) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The control subject is up before the jobs are started.
	jr := d.liveJobs.Load()
	if jr == nil && (op == "jobs" || op == "trigger") {
		return fmt.Errorf("jobs are not started yet on %s; try again", d.cfg.Node.Name)
	}
	switch op {
	case "release":
		if err := d.engine.Release(ctx, req.Worker); err != nil {
			return err
		}
		reply.Info = fmt.Sprintf("worker %q released by %s", req.Worker, d.cfg.Node.Name)
	case "drain":
		on := req.Drain == nil || *req.Drain
		perr := d.persistDrain(on)
		d.engine.SetDraining(ctx, on)
		if on {
			reply.Info = fmt.Sprintf("node %s is draining: its workers move to other nodes; it stays drained across restarts until drain --undo", d.cfg.Node.Name)
		} else {
			reply.Info = fmt.Sprintf("node %s claims workers again", d.cfg.Node.Name)
		}
		if perr != nil {
			d.log.Warn("drain not kept for the next start", "err", perr)
			reply.Info += fmt.Sprintf(" (warning: %v: a restart forgets it)", perr)
		}
	case "jobs":
		jobs, err := jr.list(ctx)
		if err != nil {
			return err
		}
		b, _ := json.Marshal(jobs)
		reply.Info = string(b)
	case "trigger":
		t, err := jr.s.Trigger(ctx, req.Worker)
		if err != nil {
			return err
		}
		if !req.Wait {
			jr.dontWait(t.Token)
			reply.Info = fmt.Sprintf("job %q started now on %s (token %d)", req.Worker, t.Node, t.Token)
			return nil
		}
		defer jr.forget(t.Token)
		select {
		case r := <-jr.expect(t.Token):
			b, _ := json.Marshal(r)
			reply.Info = string(b)
		case <-d.stopping:
			return fmt.Errorf("node %s is shutting down; job %q (token %d) may not finish", d.cfg.Node.Name, req.Worker, t.Token)
		}
	default:
		return fmt.Errorf("unknown control operation %q", op)
	}
	return nil
}

func (c *control) close() {
	_ = c.sub.Unsubscribe()
	c.wg.Wait()
}

// ctlCall sends a control request and decodes the reply.
func ctlCall(nc *nats.Conn, subject string, req ctlRequest, timeout time.Duration) (ctlReply, error) {
	b, _ := json.Marshal(req)
	m, err := nc.Request(subject, b, timeout)
	if errors.Is(err, nats.ErrNoResponders) {
		return ctlReply{}, fmt.Errorf("no node answers on %s: is the node running and connected?", subject)
	}
	if err != nil {
		return ctlReply{}, fmt.Errorf("request %s: %w", subject, err)
	}
	var r ctlReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return ctlReply{}, fmt.Errorf("reply from %s is not JSON: %w", subject, err)
	}
	if !r.OK {
		return r, errors.New(r.Error)
	}
	return r, nil
}
