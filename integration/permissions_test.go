package integration

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// TestPermissionSets runs a real nats-server with deploy/nats/permissions.conf, exactly as
// shipped, and a coordinator node in external mode as its "node" user. Each role does its
// job through the coordinator binary and the nats.go KV API, and is refused the rest: no
// write to a claim, no bucket deleted, no drain, release or call it has no right to.
func TestPermissionSets(t *testing.T) {
	root := deployRoot(t)
	pw := map[string]string{"node": "n-pw", "observer": "o-pw", "operator": "op-pw", "caller": "c-pw"}
	for u, p := range pw {
		t.Setenv("COORD_"+strings.ToUpper(u)+"_PASSWORD", p)
	}
	opts, err := server.ProcessConfigFile(filepath.Join(root, "deploy", "nats", "permissions.conf"))
	if err != nil {
		t.Fatal(err)
	}
	opts.ServerName, opts.Host, opts.Port, opts.JetStream, opts.StoreDir, opts.NoSigs, opts.NoLog =
		"perm", "127.0.0.1", -1, true, t.TempDir(), true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	url := srv.ClientURL()

	cfg := fmt.Sprintf(`workers:
  - name: w
    command: [%q, %q]
    call: ["/bin/cat"]
jobs:
  - name: j
    schedule: "@every 1h"
    command: ["/bin/true"]
`, bins.Recorder, t.TempDir())
	c := startCluster(t, cluster.Options{Nodes: 1, TTL: 3 * time.Second, NATS: []string{url}, Config: cfg,
		Env: []string{"COORD_NATS_USER=node", "COORD_NATS_PASSWORD=" + pw["node"]}})
	node := c.Node(0).Name()
	if _, err := c.WaitOwner("w", 60*time.Second, func(o cluster.WorkerStatus) bool { return o.State == "running" }); err != nil {
		t.Fatal(err)
	}

	cli := func(user string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bins.Coordinator, append(args[:1:1], append([]string{"--nats", url}, args[1:]...)...)...)
		cmd.Env = append(cleanEnv(), "COORD_NATS_USER="+user, "COORD_NATS_PASSWORD="+pw[user])
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	may := func(user string, args ...string) string {
		t.Helper()
		out, err := cli(user, args...)
		if err != nil {
			t.Errorf("%s: coordinator %s: %v\n%s", user, strings.Join(args, " "), err, out)
		}
		return out
	}
	mayNot := func(user string, args ...string) {
		t.Helper()
		if out, err := cli(user, args...); err == nil {
			t.Errorf("%s may: coordinator %s\n%s", user, strings.Join(args, " "), out)
		}
	}
	// Direct KV access as each user: reading, writing a claim, deleting the bucket.
	kvAs := func(user string) (jetstream.JetStream, func()) {
		t.Helper()
		nc, err := nats.Connect(url, nats.UserInfo(user, pw[user]), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js, nc.Close
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	canRead := func(user string, want bool) {
		t.Helper()
		js, done := kvAs(user)
		defer done()
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		defer acancel()
		var err error
		if b, berr := js.KeyValue(actx, "coord_workers"); berr != nil {
			err = berr
		} else if _, err = b.Get(actx, "w"); err == nil {
			var keys []string
			keys, err = b.Keys(actx) // an ordered consumer, as `nats kv ls` and watchers use
			if err == nil && len(keys) == 0 {
				err = fmt.Errorf("no keys")
			}
		}
		if (err == nil) != want {
			t.Errorf("%s reads claims: %v, want allowed=%v", user, err, want)
		}
	}
	cannotWrite := func(user string) {
		t.Helper()
		js, done := kvAs(user)
		defer done()
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		defer acancel()
		if _, err := js.Publish(actx, "$KV.coord_workers.w", []byte(`{"worker":"w","node":"`+user+`"}`)); err == nil {
			t.Errorf("%s wrote a claim", user)
		}
		if _, err := js.Publish(actx, "$KV.coord_workers.other", []byte(`{}`)); err == nil {
			t.Errorf("%s created a claim", user)
		}
		if err := js.DeleteKeyValue(actx, "coord_workers"); err == nil {
			t.Errorf("%s deleted the workers bucket", user)
		}
		if err := js.DeleteStream(actx, "COORD_EVENTS"); err == nil {
			t.Errorf("%s deleted the events stream", user)
		}
	}

	t.Run("observer", func(t *testing.T) {
		if out := may("observer", "status"); !strings.Contains(out, "w ") {
			t.Errorf("status:\n%s", out)
		}
		may("observer", "events", "--since", "1h")
		canRead("observer", true)
		mayNot("observer", "release", "w")
		mayNot("observer", "drain", node)
		mayNot("observer", "jobs", "run", "j")
		mayNot("observer", "call", "--timeout", "2s", "w", "{}")
		cannotWrite("observer")
	})
	t.Run("operator", func(t *testing.T) {
		may("operator", "status")
		canRead("operator", true)
		may("operator", "jobs")
		may("operator", "jobs", "run", "j")
		may("operator", "release", "w")
		if _, err := c.WaitOwner("w", 60*time.Second, func(o cluster.WorkerStatus) bool { return o.State == "running" }); err != nil {
			t.Fatal(err)
		}
		may("operator", "drain", node)
		may("operator", "drain", "--undo", node)
		mayNot("operator", "call", "--timeout", "2s", "w", "{}")
		cannotWrite("operator")
	})
	t.Run("caller", func(t *testing.T) {
		if _, err := c.WaitOwner("w", 60*time.Second, func(o cluster.WorkerStatus) bool { return o.State == "running" }); err != nil {
			t.Fatal(err)
		}
		if out := may("caller", "call", "--timeout", "20s", "w", `{"ping":1}`); !strings.Contains(out, `{"ping":1}`) {
			t.Errorf("call reply:\n%s", out)
		}
		mayNot("caller", "status")
		mayNot("caller", "events", "--since", "1h")
		mayNot("caller", "release", "w")
		mayNot("caller", "drain", node)
		canRead("caller", false) // Get alone is allowed (to verify replies), listing is not
		cannotWrite("caller")
	})
	// Nothing the refused attempts did stuck: w is still owned by the node, and it runs.
	o, err := c.WaitOwner("w", 60*time.Second, func(o cluster.WorkerStatus) bool { return o.State == "running" })
	if err != nil || o.Node != node {
		t.Fatalf("owner of w after the refused writes: %+v, %v", o, err)
	}
	checkRuns(t, c)
}
