package integration

// TestDockerCompose runs deploy/compose.yaml for real: the FROM-scratch image, three
// containers that find each other through DNS, a killed owner, a partitioned owner, a
// healed partition. It skips when no Docker engine or no compose answers.
//
// Everything is observed from outside: `coordinator status --json` run in the containers
// with `docker exec` (the image has no shell and no curl, and docker exec works with
// remote engines and Docker Desktop, where the host cannot reach container addresses),
// `docker top` for the processes, and the nodes' JSON logs. The containers share the
// host's clock, so times in different containers' logs can be compared.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	dockerBudget  = 4 * time.Minute // the whole test, build included; cleanup comes on top
	dockerWorker  = "hello"         // the worker of deploy/image-demo.yaml
	dockerService = "coordinator"   // the service of deploy/compose.yaml
	// dockerPassword is COORD_NATS_PASSWORD for the compose project (COORD_HTTP_TOKEN
	// is derived from it).
	dockerPassword = "compose-test-password"
	// dockerQuiet is how long owner and membership must stay unchanged before the owner
	// counts as settled: well above the rebalance delay (2 × renew interval = 6s by
	// default), after which a node that is not the preferred one hands the worker over.
	dockerQuiet = 20 * time.Second
	// dockerHelloEvery is how often /hello prints a line.
	dockerHelloEvery = 2 * time.Second
)

// dockerRequire skips unless a Docker engine and compose answer; it returns the compose
// command.
func dockerRequire(t *testing.T) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("docker: skipped with -short")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker: no engine answers: no docker command in PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Skipf("docker: no engine answers: docker info: %v: %s", err, dockerShort(string(out)))
	}
	if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if _, err := exec.LookPath("docker-compose"); err == nil && exec.CommandContext(ctx, "docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}
	}
	t.Skip("docker: no compose: neither `docker compose` nor `docker-compose` works")
	return nil
}

func dockerShort(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return s
}

// dockerExec runs a command with a timeout and returns its combined output.
func dockerExec(ctx context.Context, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = env
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, dockerShort(string(out)))
	}
	return string(out), nil
}

func docker(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	return dockerExec(ctx, timeout, nil, "docker", args...)
}

// dockerNode is one container of the service; its host name is the node name.
type dockerNode struct {
	id, container, name string
}

func (n dockerNode) String() string { return fmt.Sprintf("%s (container %s)", n.name, n.container) }

// dockerStatus is the part of `coordinator status --json` that the test reads.
type dockerStatus struct {
	Time    time.Time `json:"time"`
	Workers []struct {
		Worker string    `json:"worker"`
		Node   string    `json:"node"`
		Token  uint64    `json:"token"`
		Since  time.Time `json:"since"`
		State  string    `json:"state"`
	} `json:"workers"`
	Nodes []struct {
		Node    string    `json:"node"`
		Started time.Time `json:"started"`
	} `json:"nodes"`
}

type dockerClaim struct {
	node  string
	token uint64
	since time.Time
	state string
}

func (s dockerStatus) claim() (dockerClaim, bool) {
	for _, w := range s.Workers {
		if w.Worker == dockerWorker {
			return dockerClaim{node: w.Node, token: w.Token, since: w.Since, state: w.State}, true
		}
	}
	return dockerClaim{}, false
}

func (s dockerStatus) started(node string) (time.Time, bool) {
	for _, n := range s.Nodes {
		if n.Node == node {
			return n.Started, true
		}
	}
	return time.Time{}, false
}

// dockerCluster is one compose project under test.
type dockerCluster struct {
	t       *testing.T
	ctx     context.Context
	compose []string
	env     []string
	project string
	file    string
	nodes   []dockerNode
}

func (c *dockerCluster) composeCmd(timeout time.Duration, args ...string) (string, error) {
	full := append(slices.Clone(c.compose[1:]), append([]string{"-p", c.project, "-f", c.file}, args...)...)
	return dockerExec(c.ctx, timeout, c.env, c.compose[0], full...)
}

// status asks node n's own NATS server.
func (c *dockerCluster) status(n dockerNode) (dockerStatus, error) {
	out, err := docker(c.ctx, 30*time.Second, "exec", n.id, "/coordinator", "status", "--json")
	if err != nil {
		return dockerStatus{}, err
	}
	var s dockerStatus
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return s, fmt.Errorf("status of %s: %v: %s", n, err, dockerShort(out))
	}
	return s, nil
}

func (c *dockerCluster) byName(name string) (dockerNode, bool) {
	for _, n := range c.nodes {
		if n.name == name {
			return n, true
		}
	}
	return dockerNode{}, false
}

func (c *dockerCluster) others(skip dockerNode) []dockerNode {
	var out []dockerNode
	for _, n := range c.nodes {
		if n.id != skip.id {
			out = append(out, n)
		}
	}
	return out
}

// poll calls f until it reports done, for at most limit (and never past the test's
// budget). f's detail says what it saw last, for the failure message.
func (c *dockerCluster) poll(what string, limit time.Duration, f func() (bool, string)) {
	c.t.Helper()
	start := time.Now()
	end := start.Add(limit)
	if d, ok := c.ctx.Deadline(); ok && d.Before(end) {
		end = d
	}
	detail, logged := "not checked yet", ""
	for {
		var done bool
		done, detail = f()
		if !done && detail != logged {
			// What the cluster goes through while we wait, once per change.
			c.t.Logf("  %s: %v: %s", what, time.Since(start).Round(100*time.Millisecond), dockerShort(detail))
			logged = detail
		}
		if done {
			c.t.Logf("%s: after %v", what, time.Since(start).Round(100*time.Millisecond))
			return
		}
		if time.Now().After(end) {
			c.t.Fatalf("%s: not within %v; last seen: %s", what, time.Since(start).Round(time.Second), detail)
		}
		select {
		case <-c.ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// helloIn lists the nodes whose container runs /hello now.
func (c *dockerCluster) helloIn() []dockerNode {
	var out []dockerNode
	for _, n := range c.nodes {
		top, err := docker(c.ctx, 20*time.Second, "top", n.id)
		if err != nil {
			continue // not running
		}
		for line := range strings.Lines(top) {
			if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == "/hello" {
				out = append(out, n)
			}
		}
	}
	return out
}

// waitRunsOnlyOn waits until /hello runs in exactly one container, owner's.
func (c *dockerCluster) waitRunsOnlyOn(owner dockerNode) {
	c.t.Helper()
	c.poll(fmt.Sprintf("%s runs in exactly one container, on %s", dockerWorker, owner.name), 60*time.Second, func() (bool, string) {
		in := c.helloIn()
		return len(in) == 1 && in[0].id == owner.id, fmt.Sprintf("/hello processes in %v", in)
	})
}

// agreed waits until every node in from answers status, all agree on the worker's claim,
// and cond holds for it; it returns that status and claim.
func (c *dockerCluster) agreed(what string, limit time.Duration, from []dockerNode, cond func(dockerStatus, dockerClaim) (bool, string)) (dockerStatus, dockerClaim) {
	c.t.Helper()
	var last dockerStatus
	var claim dockerClaim
	c.poll(what, limit, func() (bool, string) {
		var first *dockerClaim
		for _, n := range from {
			s, err := c.status(n)
			if err != nil {
				return false, fmt.Sprintf("status from %s: %v", n.name, err)
			}
			cl, ok := s.claim()
			if !ok {
				return false, fmt.Sprintf("%s sees no claim for %s: %+v", n.name, dockerWorker, s)
			}
			if first == nil {
				first = &cl
			} else if cl.node != first.node || cl.token != first.token {
				return false, fmt.Sprintf("nodes disagree: %s on %s, %s on another node", cl.node, n.name, first.node)
			}
			if ok, why := cond(s, cl); !ok {
				return false, fmt.Sprintf("from %s: %s", n.name, why)
			}
			last, claim = s, cl
		}
		return true, ""
	})
	return last, claim
}

// checkFromHost checks what only a client on the nodes' network can see, if this host can
// reach the container addresses (a Linux host can, on a bridge network; Docker Desktop
// and remote engines cannot, and then the checks are left out): /readyz answers on every
// node, and the coordination buckets and the event stream have three replicas. With one
// replica, the node that holds a bucket takes it down with it and no failover happens.
func (c *dockerCluster) checkFromHost() {
	c.t.Helper()
	var ips []string
	for _, n := range c.nodes {
		out, err := docker(c.ctx, 30*time.Second, "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", n.id)
		if err != nil || len(strings.Fields(out)) == 0 {
			c.t.Logf("checks from the host left out: no address for %s (%v)", n, err)
			return
		}
		ips = append(ips, strings.Fields(out)[0])
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(ips[0], "8080"), 3*time.Second)
	if err != nil {
		c.t.Logf("checks from the host left out: this host cannot reach the containers' addresses: %v", err)
		return
	}
	conn.Close()
	// No kept-alive connections: their goroutines would outlive the test.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	c.poll("/readyz answers 200 on every node (from the host)", time.Minute, func() (bool, string) {
		for i, ip := range ips {
			resp, err := client.Get("http://" + net.JoinHostPort(ip, "8080") + "/readyz")
			if err != nil {
				return false, fmt.Sprintf("%s: %v", c.nodes[i], err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false, fmt.Sprintf("%s: %s", c.nodes[i], resp.Status)
			}
		}
		return true, ""
	})

	// The compose file is secure as shipped: a client on the same network without the
	// password, or without TLS, is refused. (The CA is in the containers' volume; the
	// check of the streams below trusts the server's certificate without verifying it.)
	natsURL := "nats://" + net.JoinHostPort(ips[0], "4222")
	anyCert := nats.Secure(&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // see above
	for what, opts := range map[string][]nats.Option{
		"anonymous":      {anyCert},
		"wrong password": {anyCert, nats.UserInfo("coordinator", "guess")},
		"without TLS":    {nats.UserInfo("coordinator", dockerPassword)},
	} {
		if nc, err := nats.Connect(natsURL, append(opts, nats.Timeout(3*time.Second), nats.NoReconnect())...); err == nil {
			nc.Close()
			c.t.Errorf("an unauthenticated client (%s) connected to %s", what, natsURL)
		}
	}
	nc, err := nats.Connect(natsURL, anyCert, nats.UserInfo("coordinator", dockerPassword), nats.Timeout(3*time.Second), nats.NoReconnect())
	if err != nil {
		c.t.Fatalf("NATS at %s: %v", ips[0], err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(c.ctx, 20*time.Second)
	defer cancel()
	streams := js.ListStreams(ctx)
	n := 0
	for si := range streams.Info() {
		n++
		if si.Config.Replicas != 3 {
			c.t.Errorf("stream %s has %d replicas, want 3: the node holding it takes it down with it", si.Config.Name, si.Config.Replicas)
		}
	}
	if err := streams.Err(); err != nil {
		c.t.Errorf("listing streams: %v", err)
	}
	if n == 0 {
		c.t.Error("no JetStream streams: the coordination buckets are missing")
	}
	c.t.Logf("from the host: /readyz 200 on all nodes; %d streams with 3 replicas unless reported above", n)
}

// dockerLogRecord is one line of a node's JSON log.
type dockerLogRecord struct {
	Time   time.Time `json:"time"`
	Level  string    `json:"level"`
	Msg    string    `json:"msg"`
	Worker string    `json:"worker"`
	Token  uint64    `json:"token"`
}

func (c *dockerCluster) logs(n dockerNode) []dockerLogRecord {
	c.t.Helper()
	out, err := docker(c.ctx, time.Minute, "logs", n.id)
	if err != nil {
		c.t.Fatalf("logs of %s: %v", n, err)
	}
	var recs []dockerLogRecord
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		var r dockerLogRecord
		if json.Unmarshal(sc.Bytes(), &r) == nil && !r.Time.IsZero() {
			recs = append(recs, r)
		}
	}
	return recs
}

var dockerHelloLine = regexp.MustCompile(`^hello (from|stopping on) (\S+) token (\d+)$`)

// dockerTerm is one ownership term of the worker as the /hello lines show it: where it ran
// and from when to when.
type dockerTerm struct {
	token      uint64
	node       string
	start, end time.Time
	stopped    bool // its last line is the one /hello prints on SIGTERM
}

// dockerTerms reads the terms from all nodes' logs. Terms without a stop line end at
// killed[token] if the container was killed, else 2 print intervals after their last line
// (or now for the current one).
func dockerTerms(logs map[string][]dockerLogRecord, killed map[uint64]time.Time, current uint64) ([]dockerTerm, []string) {
	terms := map[uint64]*dockerTerm{}
	var problems []string
	for container, recs := range logs {
		for _, r := range recs {
			if r.Worker != dockerWorker {
				continue
			}
			m := dockerHelloLine.FindStringSubmatch(r.Msg)
			if m == nil {
				continue
			}
			token, _ := strconv.ParseUint(m[3], 10, 64)
			term := terms[token]
			if term == nil {
				term = &dockerTerm{token: token, node: m[2], start: r.Time, end: r.Time}
				terms[token] = term
			}
			if term.node != m[2] {
				problems = append(problems, fmt.Sprintf("token %d ran on two nodes: %s and %s (container %s)", token, term.node, m[2], container))
			}
			if r.Time.Before(term.start) {
				term.start = r.Time
			}
			if r.Time.After(term.end) {
				term.end = r.Time
				term.stopped = m[1] == "stopping on"
			}
		}
	}
	var out []dockerTerm
	for _, term := range terms {
		switch {
		case term.stopped:
		case term.token == current:
			term.end = time.Now().Add(time.Hour)
		case !killed[term.token].IsZero():
			term.end = killed[term.token]
		default:
			term.end = term.end.Add(2 * dockerHelloEvery)
		}
		out = append(out, *term)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out, problems
}

// dockerFirst returns the first record that matches.
func dockerFirst(recs []dockerLogRecord, match func(dockerLogRecord) bool) (dockerLogRecord, bool) {
	for _, r := range recs {
		if match(r) {
			return r, true
		}
	}
	return dockerLogRecord{}, false
}

func TestDockerCompose(t *testing.T) {
	composeCmd := dockerRequire(t)
	root := deployRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), dockerBudget)
	defer cancel()
	begin := time.Now()

	project := fmt.Sprintf("coordtest%08x", rand.Uint32())
	image := "coordinator-test:" + project
	c := &dockerCluster{
		t: t, ctx: ctx, compose: composeCmd, project: project,
		file: filepath.Join(root, "deploy", "compose.yaml"),
		env:  append(os.Environ(), "COORD_IMAGE="+image, "COORD_NATS_PASSWORD="+dockerPassword, "COORD_HTTP_TOKEN="+dockerPassword+"-http"),
	}

	// Cleanup, also after a failure: containers, their volumes and the network (down -v),
	// then the image. It runs with its own time limit: ctx may be over.
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ccancel()
		if _, err := docker(cctx, 30*time.Second, "rmi", "-f", image); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ccancel()
		if t.Failed() {
			for _, n := range c.nodes {
				out, _ := docker(cctx, 30*time.Second, "logs", "--tail", "400", n.id)
				var keep []string
				for line := range strings.Lines(out) {
					if !strings.Contains(line, `"component":"nats-server"`) || strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
						keep = append(keep, line)
					}
				}
				t.Logf("log of %s (last lines, nats-server info left out):\n%s", n, deployTail(strings.Join(keep, ""), 60))
			}
		}
		args := append(slices.Clone(composeCmd[1:]), "-p", project, "-f", c.file, "down", "-v", "--remove-orphans", "-t", "10")
		if out, err := dockerExec(cctx, 90*time.Second, c.env, composeCmd[0], args...); err != nil {
			t.Logf("cleanup: %v\n%s", err, out)
		}
	})

	// The image: the build context is a copy of deploy/ with freshly built binaries, so
	// that the test neither needs `make image` nor writes into the source tree.
	buildDir := t.TempDir()
	dockerCopyDeploy(t, filepath.Join(root, "deploy"), buildDir)
	deployBuild(t, root, "./cmd/coordinator", filepath.Join(buildDir, "coordinator"))
	deployBuild(t, root, "./deploy/hello", filepath.Join(buildDir, "hello", "hello"))
	if _, err := docker(ctx, 3*time.Minute, "build", "-t", image, "-f", filepath.Join(buildDir, "Dockerfile"), buildDir); err != nil {
		t.Fatalf("docker build: %v", err)
	}
	if out, err := c.composeCmd(2*time.Minute, "up", "-d"); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	ids, err := docker(ctx, 30*time.Second, "ps", "-a", "-q", "--no-trunc",
		"--filter", "label=com.docker.compose.project="+project,
		"--filter", "label=com.docker.compose.service="+dockerService)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range strings.Fields(ids) {
		out, err := docker(ctx, 30*time.Second, "inspect", "--format", "{{.Config.Hostname}} {{.Name}}", id)
		if err != nil {
			t.Fatal(err)
		}
		host, name, _ := strings.Cut(strings.TrimSpace(out), " ")
		c.nodes = append(c.nodes, dockerNode{id: id, container: strings.TrimPrefix(name, "/"), name: host})
	}
	if len(c.nodes) != 3 {
		t.Fatalf("compose started %d containers of service %s, want 3 (deploy.replicas)", len(c.nodes), dockerService)
	}
	t.Logf("image %s, project %s, nodes %v (%v so far)", image, project, c.nodes, time.Since(begin).Round(time.Second))
	names := func(s dockerStatus) []string {
		var out []string
		for _, n := range s.Nodes {
			out = append(out, n.Node)
		}
		return out
	}
	allMembers := func(s dockerStatus) bool {
		for _, n := range c.nodes {
			if _, ok := s.started(n.name); !ok {
				return false
			}
		}
		return true
	}

	// 1. The three containers found each other by the service name and the worker runs
	// exactly once. The first `coordinator status` waits until every node says it runs:
	// status run earlier would create the buckets itself, with one replica.
	c.poll("all three nodes log \"coordinator running\"", 2*time.Minute, func() (bool, string) {
		for _, n := range c.nodes {
			out, err := docker(ctx, 30*time.Second, "logs", n.id)
			if err != nil || !strings.Contains(out, `"msg":"coordinator running"`) {
				return false, fmt.Sprintf("%s not running yet (%v)", n, err)
			}
		}
		return true, ""
	})
	c.checkFromHost()
	first, claim1 := c.agreed("cluster formed: all three nodes answer and see each other and one owner", 2*time.Minute, c.nodes,
		func(s dockerStatus, cl dockerClaim) (bool, string) {
			return allMembers(s) && cl.state == "running", fmt.Sprintf("nodes %v, claim %+v", names(s), cl)
		})
	owner1, ok := c.byName(claim1.node)
	if !ok {
		t.Fatalf("the owner %q is none of the containers %v", claim1.node, c.nodes)
	}
	c.waitRunsOnlyOn(owner1)

	// 2. Kill the owner's container: the worker moves to another node with a larger token.
	if _, err := docker(ctx, 30*time.Second, "kill", owner1.id); err != nil {
		t.Fatal(err)
	}
	killed := map[uint64]time.Time{}
	if out, err := docker(ctx, 30*time.Second, "inspect", "--format", "{{.State.FinishedAt}}", owner1.id); err == nil {
		if at, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(out)); err == nil {
			killed[claim1.token] = at
		}
	}
	_, claim2 := c.agreed("failover after docker kill of "+owner1.name, 2*time.Minute, c.others(owner1),
		func(s dockerStatus, cl dockerClaim) (bool, string) {
			return cl.node != owner1.name && cl.token > claim1.token && cl.state == "running", fmt.Sprintf("claim %+v", cl)
		})
	owner2, _ := c.byName(claim2.node)
	c.waitRunsOnlyOn(owner2)

	// 3. Bring the killed node back: three members again, so that the majority keeps
	// its quorum in the partition below. Then wait until the owner has settled, so that
	// no planned handoff (rebalancing towards the restarted node) races with the cut.
	startedBefore, _ := first.started(owner1.name)
	if _, err := docker(ctx, 30*time.Second, "start", owner1.id); err != nil {
		t.Fatal(err)
	}
	_, claim3 := c.agreed(fmt.Sprintf("%s rejoined and the owner settled for %v", owner1.name, dockerQuiet), 2*time.Minute, c.nodes,
		func(s dockerStatus, cl dockerClaim) (bool, string) {
			restarted, ok := s.started(owner1.name)
			if !allMembers(s) || !ok || !restarted.After(startedBefore) {
				return false, fmt.Sprintf("nodes %v, %s not restarted yet", names(s), owner1.name)
			}
			since := cl.since
			if restarted.After(since) {
				since = restarted
			}
			return cl.state == "running" && s.Time.Sub(since) >= dockerQuiet,
				fmt.Sprintf("claim %+v, quiet for %v", cl, s.Time.Sub(since).Round(time.Second))
		})
	owner3, _ := c.byName(claim3.node)
	c.waitRunsOnlyOn(owner3)

	// 4. Cut the owner off the network, a real partition: it must stop its worker on its
	// own (fence), and the majority must start it elsewhere only after that.
	nets, err := docker(ctx, 30*time.Second, "inspect", "--format", `{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}`, owner3.id)
	if err != nil || len(strings.Fields(nets)) != 1 {
		t.Fatalf("networks of %s: %q %v (want one: the compose network)", owner3, nets, err)
	}
	network := strings.Fields(nets)[0]
	cutAt := time.Now()
	if _, err := docker(ctx, 30*time.Second, "network", "disconnect", network, owner3.id); err != nil {
		t.Fatal(err)
	}
	_, claim4 := c.agreed("the majority side starts the worker again after "+owner3.name+" was cut off", 2*time.Minute, c.others(owner3),
		func(s dockerStatus, cl dockerClaim) (bool, string) {
			return cl.node != owner3.name && cl.token > claim3.token && cl.state == "running", fmt.Sprintf("claim %+v", cl)
		})
	owner4, _ := c.byName(claim4.node)
	c.waitRunsOnlyOn(owner4)

	// The fence: the cut-off owner stops its worker (its watchdog, at the lease deadline)
	// before any node claims the worker again, and its /hello has printed its stop line
	// before any new /hello starts. All times come from the nodes' logs.
	logs := map[string][]dockerLogRecord{}
	for _, n := range c.nodes {
		logs[n.id] = c.logs(n)
	}
	cutLog := logs[owner3.id]
	fence, ok := dockerFirst(cutLog, func(r dockerLogRecord) bool {
		return r.Worker == dockerWorker && r.Msg == "lease lost; worker stopped" && r.Token == claim3.token
	})
	if !ok {
		t.Fatalf("%s logged no \"lease lost; worker stopped\" for token %d: its worker was not fenced", owner3, claim3.token)
	}
	stopped, ok := dockerFirst(cutLog, func(r dockerLogRecord) bool {
		return r.Worker == dockerWorker && r.Msg == fmt.Sprintf("hello stopping on %s token %d", owner3.name, claim3.token)
	})
	if !ok {
		t.Fatalf("/hello on %s never printed its stop line for token %d: it did not get SIGTERM", owner3, claim3.token)
	}
	var claimed, started dockerLogRecord
	var claimedOn, startedOn dockerNode
	for _, n := range c.others(owner3) {
		if r, ok := dockerFirst(logs[n.id], func(r dockerLogRecord) bool {
			return r.Worker == dockerWorker && r.Msg == "claimed" && r.Token > claim3.token
		}); ok && (claimed.Time.IsZero() || r.Time.Before(claimed.Time)) {
			claimed, claimedOn = r, n
		}
		if r, ok := dockerFirst(logs[n.id], func(r dockerLogRecord) bool {
			m := dockerHelloLine.FindStringSubmatch(r.Msg)
			if r.Worker != dockerWorker || m == nil || m[1] != "from" {
				return false
			}
			tok, _ := strconv.ParseUint(m[3], 10, 64)
			return tok > claim3.token
		}); ok && (started.Time.IsZero() || r.Time.Before(started.Time)) {
			started, startedOn = r, n
		}
	}
	if claimed.Time.IsZero() || started.Time.IsZero() {
		t.Fatalf("no node logged a claim (%v) and a /hello start (%v) with a token above %d", claimed, started, claim3.token)
	}
	if !fence.Time.Before(claimed.Time) {
		t.Errorf("the cut-off owner fenced at %v, after %s claimed at %v", fence.Time, claimedOn.name, claimed.Time)
	}
	if !stopped.Time.Before(started.Time) {
		t.Errorf("two copies: /hello on %s stopped at %v, after /hello on %s started at %v", owner3.name, stopped.Time, startedOn.name, started.Time)
	}
	t.Logf("partition: %s fenced %v after the cut and %v before %s claimed; its /hello stopped %v before the next one started",
		owner3.name, fence.Time.Sub(cutAt).Round(time.Millisecond), claimed.Time.Sub(fence.Time).Round(time.Millisecond),
		claimedOn.name, started.Time.Sub(stopped.Time).Round(time.Millisecond))
	// The timeline of the partition, for whoever reads the log (seconds from the cut).
	type event struct {
		at   time.Time
		line string
	}
	var timeline []event
	for _, n := range c.nodes {
		for _, r := range logs[n.id] {
			if r.Time.Before(cutAt.Add(-time.Second)) || strings.HasPrefix(r.Msg, "hello from") || strings.Contains(r.Msg, "has NO quorum") {
				continue
			}
			if r.Worker == dockerWorker || r.Level == "WARN" || r.Level == "ERROR" {
				timeline = append(timeline, event{r.Time, fmt.Sprintf("%+7.2fs %s %s %s token=%d", r.Time.Sub(cutAt).Seconds(), n.name, r.Level, r.Msg, r.Token)})
			}
		}
	}
	sort.SliceStable(timeline, func(i, j int) bool { return timeline[i].at.Before(timeline[j].at) })
	for _, e := range timeline {
		t.Log("  " + e.line)
	}

	// 5. Heal the partition: the node rejoins and does not start a second copy.
	if _, err := docker(ctx, 30*time.Second, "network", "connect", network, owner3.id); err != nil {
		t.Fatal(err)
	}
	_, claim5 := c.agreed(owner3.name+" rejoined after the partition, one owner", 2*time.Minute, c.nodes,
		func(s dockerStatus, cl dockerClaim) (bool, string) {
			return allMembers(s) && cl.state == "running" && cl.token >= claim4.token, fmt.Sprintf("nodes %v, claim %+v", names(s), cl)
		})
	owner5, _ := c.byName(claim5.node)
	c.waitRunsOnlyOn(owner5)
	if claim5.token == claim4.token && owner5.id != owner4.id {
		t.Errorf("token %d moved from %s to %s", claim4.token, owner4.name, owner5.name)
	}
	if owner5.id == owner3.id && claim5.token <= claim4.token {
		t.Errorf("%s runs the worker again under token %d after the partition", owner3.name, claim5.token)
	}

	// Across the whole run, from every node's log: the worker's terms never overlap, and
	// later terms have larger tokens.
	logs = map[string][]dockerLogRecord{}
	for _, n := range c.nodes {
		logs[n.container] = c.logs(n)
	}
	terms, problems := dockerTerms(logs, killed, claim5.token)
	for _, p := range problems {
		t.Error(p)
	}
	for i := 1; i < len(terms); i++ {
		a, b := terms[i-1], terms[i]
		if !a.end.Before(b.start) {
			t.Errorf("two copies: token %d on %s ran until %v, token %d on %s started at %v", a.token, a.node, a.end, b.token, b.node, b.start)
		}
		if a.token >= b.token {
			t.Errorf("token %d on %s started after token %d on %s: tokens must grow", b.token, b.node, a.token, a.node)
		}
	}
	var seen []string
	for _, term := range terms {
		seen = append(seen, fmt.Sprintf("%d@%s", term.token, term.node))
	}
	for _, tok := range []uint64{claim1.token, claim2.token, claim3.token, claim4.token, claim5.token} {
		if !slices.ContainsFunc(terms, func(term dockerTerm) bool { return term.token == tok }) {
			t.Errorf("no /hello output for token %d (terms seen: %v)", tok, seen)
		}
	}
	t.Logf("terms: %v; run time %v", seen, time.Since(begin).Round(time.Second))
}

// dockerCopyDeploy copies the sources in deploy/ (no built binaries) to dst.
func dockerCopyDeploy(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() || deployIsELF(p) {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
}
