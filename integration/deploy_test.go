package integration

// The deploy/ files are code that no compiler reads: a renamed flag breaks them silently.
// TestDeployFiles checks every file there without Docker or Kubernetes: YAML parses, the
// Dockerfile copies what exists or what `make image` builds, the systemd unit has what it
// needs, local-cluster.sh parses (and, in its own test, really runs), and every flag given
// to `coordinator` anywhere is one that `coordinator COMMAND -h` lists.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/conf"
	"go.yaml.in/yaml/v3"
)

// deployRoot is the repository root (where go.mod is).
func deployRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.Contains(data, []byte("module github.com/jetcoord/coordinator")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("deploy: repository root (go.mod of github.com/jetcoord/coordinator) not found above the working directory")
		}
		dir = parent
	}
}

// deployGo is the go command that runs this test.
func deployGo() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); deployFileExists(p) {
		return p
	}
	return "go"
}

func deployFileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// deployBuild builds the static binary of pkg (relative to the repository root) to out.
func deployBuild(t *testing.T, root, pkg, out string) {
	t.Helper()
	cmd := exec.Command(deployGo(), "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// deployFlagSet is what `coordinator COMMAND -h` lists: flag name -> takes a value.
type deployFlagSet map[string]bool

var deployHelpFlag = regexp.MustCompile(`^\s+-([A-Za-z0-9][A-Za-z0-9_.-]*)(?:\s+(\S+))?\s*$`)

// deployCommandFlags runs `bin COMMAND -h` and parses the flag list.
func deployCommandFlags(t *testing.T, bin, command string) (deployFlagSet, error) {
	t.Helper()
	out, _ := exec.Command(bin, command, "-h").CombinedOutput() // -h exits 2
	// Go's flag package prints "Usage of run:"; the CLI's own help "usage: coordinator run".
	if !bytes.Contains(out, []byte("Usage of "+command)) && !bytes.Contains(out, []byte("usage: coordinator "+command)) {
		return nil, fmt.Errorf("`coordinator %s -h` printed no flag list:\n%s", command, out)
	}
	set := deployFlagSet{}
	for line := range strings.Lines(string(out)) {
		if m := deployHelpFlag.FindStringSubmatch(strings.TrimRight(line, "\n")); m != nil {
			set[m[1]] = m[2] != "" // "-json" alone is a bool; "-nats string" takes a value
		}
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("no flags found in `coordinator %s -h`:\n%s", command, out)
	}
	return set, nil
}

// deployFlags caches the flag sets of one binary's commands.
type deployFlags struct {
	t    *testing.T
	bin  string
	mu   sync.Mutex
	sets map[string]deployFlagSet
	errs map[string]error
}

func (f *deployFlags) of(command string) (deployFlagSet, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.sets[command]; ok {
		return s, f.errs[command]
	}
	s, err := deployCommandFlags(f.t, f.bin, command)
	f.sets[command], f.errs[command] = s, err
	return s, err
}

// deployInvocation is one place where a deploy file runs the coordinator.
type deployInvocation struct {
	where string   // e.g. "command of service coordinator"
	argv  []string // after the binary: COMMAND and its flags
}

// check reports every problem of inv's flags as `coordinator COMMAND` would parse them
// (Go's flag package: -name, --name, -name=value, "--" ends the flags, the first non-flag
// argument ends them too).
func (f *deployFlags) check(inv deployInvocation) []string {
	if len(inv.argv) == 0 {
		return []string{inv.where + ": no command (run, status, ...) after the binary"}
	}
	command := inv.argv[0]
	set, err := f.of(command)
	if err != nil {
		return []string{fmt.Sprintf("%s: command %q: %v", inv.where, command, err)}
	}
	var problems []string
	args := inv.argv[1:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			problems = append(problems, fmt.Sprintf("%s: %q is not a flag: `coordinator %s` stops reading flags there and refuses arguments", inv.where, a, command))
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		takesValue, ok := set[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: flag -%s is not a flag of `coordinator %s` (it has: %s)", inv.where, name, command, strings.Join(slices.Sorted(maps.Keys(set)), ", ")))
			continue
		}
		switch {
		case takesValue && !hasValue:
			if i+1 >= len(args) {
				problems = append(problems, fmt.Sprintf("%s: flag -%s needs a value", inv.where, name))
				continue
			}
			i++
		case takesValue && value == "":
			problems = append(problems, fmt.Sprintf("%s: flag -%s has an empty value", inv.where, name))
		}
	}
	return problems
}

// deployFlagValue returns the value of --name in argv, the way the flag package reads it.
func deployFlagValue(argv []string, name string) (string, bool) {
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		n, v, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if !strings.HasPrefix(a, "-") || n != name {
			continue
		}
		if hasValue {
			return v, true
		}
		if i+1 < len(argv) {
			return argv[i+1], true
		}
	}
	return "", false
}

// deployIsELF tells built binaries (deploy/coordinator, deploy/hello/hello) from sources.
func deployIsELF(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [4]byte
	_, err = f.Read(magic[:])
	return err == nil && string(magic[:]) == "\x7fELF"
}

// deployMakeImageOutputs lists what `make image` builds into deploy/ (the -o arguments of
// the image recipe), relative to deploy/.
func deployMakeImageOutputs(t *testing.T, root string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatalf("Makefile: %v", err)
	}
	var outs []string
	in := false
	for line := range strings.Lines(string(data)) {
		switch {
		case strings.HasPrefix(line, "image:"):
			in = true
			continue
		case in && !strings.HasPrefix(line, "\t"):
			in = false
		}
		if !in {
			continue
		}
		fields := strings.Fields(line)
		for i, f := range fields {
			if f == "-o" && i+1 < len(fields) {
				if rel, ok := strings.CutPrefix(fields[i+1], "deploy/"); ok {
					outs = append(outs, rel)
				}
			}
		}
	}
	return outs
}

func TestDeployFiles(t *testing.T) {
	root := deployRoot(t)
	deployDir := filepath.Join(root, "deploy")
	bin := filepath.Join(t.TempDir(), "coordinator")
	deployBuild(t, root, "./cmd/coordinator", bin)
	flags := &deployFlags{t: t, bin: bin, sets: map[string]deployFlagSet{}, errs: map[string]error{}}
	built := deployMakeImageOutputs(t, root)

	var files []string
	err := filepath.WalkDir(deployDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(deployDir, p)
		if deployIsELF(p) {
			return nil // a build product: deploy/coordinator, deploy/hello/hello
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Files checked as part of another: what a Dockerfile COPY takes (a whole directory
	// too), .dockerignore (read with the Dockerfile), Go sources (built as a package).
	checkedBy := map[string]string{}
	invocations := 0
	report := func(t *testing.T, file string, problems []string) {
		t.Helper()
		for _, p := range problems {
			t.Errorf("deploy/%s: %s", file, p)
		}
	}
	checkInvocations := func(t *testing.T, file string, invs []deployInvocation) {
		t.Helper()
		if len(invs) == 0 {
			t.Errorf("deploy/%s: found no coordinator command line to check (did the file's layout change? update this test)", file)
		}
		for _, inv := range invs {
			invocations++
			report(t, file, flags.check(inv))
		}
	}

	for _, file := range files {
		p := filepath.Join(deployDir, filepath.FromSlash(file))
		switch {
		case file == "Dockerfile":
			t.Run(file, func(t *testing.T) {
				invs, problems, sources := deployCheckDockerfile(deployDir, built)
				report(t, file, problems)
				checkInvocations(t, file, invs)
				for _, s := range sources {
					for _, f := range files {
						if f == s || strings.HasPrefix(f, strings.TrimSuffix(s, "/")+"/") {
							checkedBy[f] = "Dockerfile COPY"
						}
					}
				}
				checkedBy[".dockerignore"] = "Dockerfile"
			})
		case file == "compose.yaml" || file == "docker-compose.yaml":
			t.Run(file, func(t *testing.T) {
				invs, problems := deployCheckCompose(p)
				report(t, file, problems)
				checkInvocations(t, file, invs)
			})
		case strings.HasPrefix(file, "kubernetes/") && (strings.HasSuffix(file, ".yaml") || strings.HasSuffix(file, ".yml")):
			t.Run(file, func(t *testing.T) {
				invs, configs, problems := deployCheckKubernetes(p)
				report(t, file, problems)
				checkInvocations(t, file, invs)
				for name, content := range configs {
					cfg := filepath.Join(t.TempDir(), "coordinator.yaml")
					if err := os.WriteFile(cfg, []byte(content), 0o644); err != nil {
						t.Fatal(err)
					}
					if out, err := exec.Command(bin, "check", "--config", cfg).CombinedOutput(); err != nil {
						t.Errorf("deploy/%s: %s does not pass `coordinator check`: %v\n%s", file, name, err, out)
					}
				}
			})
		case strings.HasPrefix(file, "helm/"):
			checkedBy[file] = "TestHelmChart (helm lint, helm template, and the Kubernetes checks here)"
		case strings.HasPrefix(file, "prometheus/"):
			checkedBy[file] = "TestAlertRules (promtool)"
		case strings.HasPrefix(file, "grafana/"):
			checkedBy[file] = "TestDashboardAndAlertMetricsExported"
		case strings.HasSuffix(file, ".yaml") || strings.HasSuffix(file, ".yml"):
			// Anything else in YAML is a coordinator config file.
			t.Run(file, func(t *testing.T) {
				if out, err := exec.Command(bin, "check", "--config", p).CombinedOutput(); err != nil {
					t.Errorf("deploy/%s: `coordinator check --config` fails: %v\n%s", file, err, out)
				}
			})
		case strings.HasSuffix(file, ".service"):
			t.Run(file, func(t *testing.T) {
				invs, problems := deployCheckSystemd(p, bin)
				report(t, file, problems)
				checkInvocations(t, file, invs)
			})
		case strings.HasSuffix(file, ".sh"):
			t.Run(file, func(t *testing.T) {
				invs, problems := deployCheckShell(p)
				report(t, file, problems)
				checkInvocations(t, file, invs)
			})
		case strings.HasSuffix(file, ".go"):
			dir := path.Dir(file)
			if _, done := checkedBy[dir+"/"]; done {
				checkedBy[file] = "go build"
				continue
			}
			checkedBy[dir+"/"] = "go build"
			checkedBy[file] = "go build"
			t.Run(dir, func(t *testing.T) {
				deployBuild(t, root, "./deploy/"+dir, filepath.Join(t.TempDir(), path.Base(dir)))
			})
		case strings.HasSuffix(file, ".md") || strings.HasSuffix(file, ".txt"):
			checkedBy[file] = "documentation"
		case strings.HasSuffix(file, ".conf"):
			// nats-server configuration (deploy/nats/permissions.conf is also run for real
			// by TestPermissionSets): it must parse.
			checkedBy[file] = "nats-server conf parser"
			t.Run(file, func(t *testing.T) {
				data, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				// Secrets come from the server's environment: stand in for them.
				text := regexp.MustCompile(`\$COORD_[A-Z_]+`).ReplaceAllString(string(data), `"x"`)
				if _, err := conf.Parse(text); err != nil {
					t.Errorf("deploy/%s: %v", file, err)
				}
			})
		}
	}
	for _, file := range files {
		switch {
		case file == "Dockerfile", file == "compose.yaml", file == "docker-compose.yaml",
			strings.HasSuffix(file, ".yaml"), strings.HasSuffix(file, ".yml"),
			strings.HasSuffix(file, ".service"), strings.HasSuffix(file, ".sh"):
			continue
		}
		if _, ok := checkedBy[file]; !ok {
			t.Errorf("deploy/%s: no check covers this file; add one to integration/deploy_test.go (or COPY it in the Dockerfile)", file)
		}
	}
	t.Logf("checked %d files in deploy/, %d coordinator command lines", len(files), invocations)
}

// --- Dockerfile ---

// deployDockerInstr is one Dockerfile instruction with continuation lines joined.
type deployDockerInstr struct {
	line int
	op   string // upper case
	rest string
}

func deployParseDockerfile(data string) []deployDockerInstr {
	var out []deployDockerInstr
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(data, "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue // comments inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		op, rest, _ := strings.Cut(cur.String(), " ")
		out = append(out, deployDockerInstr{line: start, op: strings.ToUpper(op), rest: strings.TrimSpace(rest)})
		cur.Reset()
	}
	return out
}

// deployCheckDockerfile returns the coordinator command line (ENTRYPOINT + CMD), problems,
// and the COPY sources (relative to deploy/, the build context).
func deployCheckDockerfile(deployDir string, built []string) ([]deployInvocation, []string, []string) {
	data, err := os.ReadFile(filepath.Join(deployDir, "Dockerfile"))
	if err != nil {
		return nil, []string{err.Error()}, nil
	}
	ignore, _ := os.ReadFile(filepath.Join(deployDir, ".dockerignore"))
	var problems, sources []string
	var entrypoint, cmd []string
	var user string
	var volumes []string
	dests := map[string]bool{}
	dataChowned := false
	froms := 0
	for _, in := range deployParseDockerfile(string(data)) {
		at := fmt.Sprintf("line %d: %s", in.line, in.op)
		switch in.op {
		case "FROM":
			froms++
			if in.rest != "scratch" {
				problems = append(problems, fmt.Sprintf("%s %s: the image must be FROM scratch (there is no registry to pull from)", at, in.rest))
			}
		case "COPY", "ADD":
			fields := strings.Fields(in.rest)
			chown := ""
			for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
				if v, ok := strings.CutPrefix(fields[0], "--chown="); ok {
					chown = v
				}
				if strings.HasPrefix(fields[0], "--from=") {
					problems = append(problems, at+": --from needs a build stage or an image; there is neither")
				}
				fields = fields[1:]
			}
			if len(fields) < 2 {
				problems = append(problems, at+": want SOURCE... DEST")
				continue
			}
			dest := fields[len(fields)-1]
			dests[strings.TrimSuffix(dest, "/")] = true
			if strings.TrimSuffix(dest, "/") == "/data" && strings.HasPrefix(chown, "65534") {
				dataChowned = true
			}
			for _, src := range fields[:len(fields)-1] {
				clean := strings.TrimSuffix(src, "/")
				switch {
				case deployFileExists(filepath.Join(deployDir, filepath.FromSlash(clean))) && !deployIsELF(filepath.Join(deployDir, filepath.FromSlash(clean))):
					sources = append(sources, src)
				case slices.Contains(built, clean):
					// built by `make image` (and perhaps present from an earlier build)
				default:
					problems = append(problems, fmt.Sprintf("%s %s: deploy/%s does not exist and `make image` does not build it (add `CGO_ENABLED=0 $(GO) build -o deploy/%s ...` to the image target in the Makefile); make image builds: %v", at, src, clean, clean, built))
				}
				if len(ignore) > 0 && !deployDockerignoreSends(string(ignore), clean) {
					problems = append(problems, fmt.Sprintf("%s %s: .dockerignore keeps it out of the build context", at, src))
				}
			}
		case "ENTRYPOINT", "CMD":
			var argv []string
			if err := json.Unmarshal([]byte(in.rest), &argv); err != nil {
				problems = append(problems, fmt.Sprintf("%s: use the exec form [\"...\"] (there is no /bin/sh in a scratch image): %v", at, err))
				continue
			}
			if in.op == "ENTRYPOINT" {
				entrypoint = argv
			} else {
				cmd = argv
			}
		case "USER":
			user = in.rest
		case "VOLUME":
			var vs []string
			if json.Unmarshal([]byte(in.rest), &vs) != nil {
				vs = strings.Fields(in.rest)
			}
			volumes = append(volumes, vs...)
		case "RUN":
			problems = append(problems, at+": RUN needs a shell, and a scratch image has none")
		}
	}
	if froms != 1 {
		problems = append(problems, fmt.Sprintf("want exactly one FROM (scratch), found %d", froms))
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "0" || u == "root" {
		problems = append(problems, fmt.Sprintf("USER is %q: run as non-root (USER 65534:65534)", user))
	}
	if !slices.Contains(volumes, "/data") {
		problems = append(problems, "no VOLUME /data for the JetStream store")
	}
	if !dataChowned {
		problems = append(problems, "/data is not created by a COPY --chown=65534...: Docker would create it owned by root and the non-root node could not write its store")
	}
	if len(entrypoint) != 1 || !dests[entrypoint[0]] || path.Base(entrypoint[0]) != "coordinator" {
		problems = append(problems, fmt.Sprintf("ENTRYPOINT %q: want [\"/coordinator\"], a binary that a COPY puts there", entrypoint))
		return nil, problems, sources
	}
	return []deployInvocation{{where: "ENTRYPOINT + CMD", argv: cmd}}, problems, sources
}

// deployDockerignoreSends reports whether src goes into the build context, for the simple
// .dockerignore this repository uses ("*", then "!path" exceptions; last match wins).
func deployDockerignoreSends(ignore, src string) bool {
	send := true
	for line := range strings.Lines(ignore) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pattern, negate := strings.CutPrefix(line, "!")
		pattern = strings.TrimSuffix(pattern, "/")
		// A pattern matches src or a directory above it; an exception for something
		// below src sends part of it, which counts.
		match := negate && strings.HasPrefix(pattern, src+"/")
		parts := strings.Split(src, "/")
		for i := range parts {
			if ok, _ := path.Match(pattern, strings.Join(parts[:i+1], "/")); ok {
				match = true
			}
		}
		if match {
			send = negate
		}
	}
	return send
}

// --- compose ---

// deployArgv reads a compose/Kubernetes command: a list, or a string split on white space.
func deployArgv(v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return strings.Fields(v), nil
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			switch x := x.(type) {
			case string:
				out = append(out, x)
			case int, float64, bool:
				out = append(out, fmt.Sprint(x))
			default:
				return nil, fmt.Errorf("element %v is not a string", x)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a list or a string, got %T", v)
}

func deployMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func deployList(v any) []any {
	l, _ := v.([]any)
	return l
}

func deployInt(v any) (int, bool) {
	switch v := v.(type) {
	case int:
		return v, true
	case string:
		n, err := strconv.Atoi(v)
		return n, err == nil
	}
	return 0, false
}

var deployImageVar = regexp.MustCompile(`^\$\{COORD_IMAGE:-[^}]+\}$`)

func deployCheckCompose(p string) ([]deployInvocation, []string) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, []string{err.Error()}
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, []string{"YAML: " + err.Error()}
	}
	var problems []string
	var invs []deployInvocation
	services := deployMap(doc["services"])
	if len(services) == 0 {
		return nil, []string{"no services"}
	}
	networks := deployMap(doc["networks"])
	replicas := map[string]int{}
	for name, v := range services {
		svc := deployMap(v)
		at := "service " + name
		if img, _ := svc["image"].(string); !deployImageVar.MatchString(img) {
			problems = append(problems, fmt.Sprintf("%s: image %q: want ${COORD_IMAGE:-coordinator:dev}, so that tests and users can pick the tag", at, img))
		}
		if _, ok := svc["build"]; ok {
			problems = append(problems, at+": build: the image comes from `make image` (the binaries are built outside Docker)")
		}
		if svc["network_mode"] != nil {
			problems = append(problems, fmt.Sprintf("%s: network_mode %v: use the project network, where the service name resolves to the containers", at, svc["network_mode"]))
		}
		n := 1
		if d := deployMap(svc["deploy"]); d != nil && d["replicas"] != nil {
			n, _ = deployInt(d["replicas"])
		} else if svc["scale"] != nil {
			n, _ = deployInt(svc["scale"])
		}
		replicas[name] = n
		for _, port := range deployList(svc["ports"]) {
			switch port := port.(type) {
			case string:
				if !strings.HasPrefix(port, "127.0.0.1:") && !strings.HasPrefix(port, "[::1]:") {
					problems = append(problems, fmt.Sprintf("%s: port %q is published on every interface: bind it to 127.0.0.1", at, port))
				}
			case map[string]any:
				if ip, _ := port["host_ip"].(string); ip != "127.0.0.1" && ip != "::1" {
					problems = append(problems, fmt.Sprintf("%s: port %v is published on every interface: set host_ip: 127.0.0.1", at, port))
				}
			default:
				problems = append(problems, fmt.Sprintf("%s: port %v: publish it as \"127.0.0.1:HOST:CONTAINER\"", at, port))
			}
		}
		var svcNets []string
		switch nv := svc["networks"].(type) {
		case []any:
			for _, x := range nv {
				svcNets = append(svcNets, fmt.Sprint(x))
			}
		case map[string]any:
			for k := range nv {
				svcNets = append(svcNets, k)
			}
		}
		if len(svcNets) == 0 {
			problems = append(problems, at+": no networks: put the nodes on a network of their own")
		}
		for _, n := range svcNets {
			if _, ok := networks[n]; !ok {
				problems = append(problems, fmt.Sprintf("%s: network %q is not defined under networks:", at, n))
			}
		}

		if ep, _ := deployArgv(svc["entrypoint"]); len(ep) > 0 && !(len(ep) == 1 && path.Base(ep[0]) == "coordinator") {
			continue // not the coordinator
		}
		argv, err := deployArgv(svc["command"])
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: command: %v", at, err))
			continue
		}
		if len(argv) > 0 {
			invs = append(invs, deployInvocation{where: at + " command", argv: argv})
		}
		if hc := deployMap(svc["healthcheck"]); hc != nil {
			test, err := deployArgv(hc["test"])
			switch {
			case err != nil:
				problems = append(problems, fmt.Sprintf("%s: healthcheck: %v", at, err))
			case len(test) > 0 && test[0] == "CMD-SHELL", len(test) > 0 && test[0] != "CMD" && test[0] != "NONE":
				problems = append(problems, fmt.Sprintf("%s: healthcheck %q needs a shell; the image has none: use [\"CMD\", \"/coordinator\", ...]", at, test))
			case len(test) > 1 && test[0] == "CMD" && path.Base(test[1]) == "coordinator":
				invs = append(invs, deployInvocation{where: at + " healthcheck", argv: test[2:]})
			}
		}

		// Discovery by service name: the name must be a service here, and the expected
		// cluster size what that service runs.
		if d, ok := deployFlagValue(argv, "discover"); ok {
			name := strings.TrimPrefix(d, "dns:")
			if i := strings.LastIndexByte(name, ':'); i >= 0 {
				name = name[:i]
			}
			if _, ok := services[name]; !ok {
				problems = append(problems, fmt.Sprintf("%s: --discover %s: %q is not a service of this file, so it does not resolve to the nodes", at, d, name))
			}
			size, _ := deployFlagValue(argv, "cluster-size")
			if n, err := strconv.Atoi(size); err != nil || n < 3 {
				problems = append(problems, fmt.Sprintf("%s: --cluster-size %q: want the number of nodes, at least 3", at, size))
			}
		}
	}
	for _, inv := range invs {
		d, ok := deployFlagValue(inv.argv, "discover")
		if !ok {
			continue
		}
		name := strings.TrimPrefix(d, "dns:")
		if i := strings.LastIndexByte(name, ':'); i >= 0 {
			name = name[:i]
		}
		size, _ := deployFlagValue(inv.argv, "cluster-size")
		if n, err := strconv.Atoi(size); err == nil && replicas[name] != n {
			problems = append(problems, fmt.Sprintf("%s: --cluster-size %d but service %s runs %d replicas", inv.where, n, name, replicas[name]))
		}
	}
	return invs, problems
}

// --- Kubernetes ---

func deployDecodeAll(data []byte) ([]map[string]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return docs, err
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	return docs, nil
}

// deployPath walks nested maps: deployPath(doc, "spec", "template", "spec").
func deployPath(v any, keys ...string) any {
	for _, k := range keys {
		v = deployMap(v)[k]
	}
	return v
}

var deployEnvRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// deployCheckKubernetes returns the coordinator command lines, the coordinator configs in
// ConfigMaps (name -> content) and problems.
func deployCheckKubernetes(p string) ([]deployInvocation, map[string]string, []string) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, nil, []string{err.Error()}
	}
	docs, err := deployDecodeAll(data)
	if err != nil {
		return nil, nil, []string{"YAML: " + err.Error()}
	}
	var problems []string
	var invs []deployInvocation
	configs := map[string]string{}
	services := map[string]map[string]any{}
	configMaps := map[string]map[string]any{}
	var workloads, pdbs []map[string]any
	for i, doc := range docs {
		kind, _ := doc["kind"].(string)
		name, _ := deployPath(doc, "metadata", "name").(string)
		if kind == "" || name == "" || doc["apiVersion"] == nil {
			problems = append(problems, fmt.Sprintf("document %d: want apiVersion, kind and metadata.name", i+1))
			continue
		}
		switch kind {
		case "Service":
			services[name] = doc
		case "ConfigMap":
			configMaps[name] = doc
			for key, v := range deployMap(doc["data"]) {
				if s, ok := v.(string); ok && (strings.HasSuffix(key, ".yaml") || strings.HasSuffix(key, ".yml")) {
					configs["ConfigMap "+name+" "+key] = s
				}
			}
		case "StatefulSet", "Deployment":
			workloads = append(workloads, doc)
		case "PodDisruptionBudget":
			pdbs = append(pdbs, doc)
		}
	}
	if len(workloads) == 0 {
		problems = append(problems, "no StatefulSet or Deployment")
	}
	for _, w := range workloads {
		kind := w["kind"].(string)
		wname := deployPath(w, "metadata", "name").(string)
		at := kind + " " + wname
		pod := deployPath(w, "spec", "template", "spec")
		podLabels := deployMap(deployPath(w, "spec", "template", "metadata", "labels"))
		selector := deployMap(deployPath(w, "spec", "selector", "matchLabels"))
		if len(selector) == 0 || !deployLabelsMatch(selector, podLabels) {
			problems = append(problems, fmt.Sprintf("%s: spec.selector.matchLabels %v does not select the pod labels %v", at, selector, podLabels))
		}
		replicas, _ := deployInt(deployPath(w, "spec", "replicas"))
		if sc := deployMap(deployPath(pod, "securityContext")); sc["runAsNonRoot"] != true {
			problems = append(problems, at+": pod securityContext.runAsNonRoot is not true")
		}
		mounts := map[string]string{} // mount path -> volume name
		volumes := map[string]map[string]any{}
		for _, v := range deployList(deployPath(pod, "volumes")) {
			vm := deployMap(v)
			n, _ := vm["name"].(string)
			volumes[n] = vm
		}
		claimTemplates := map[string]bool{}
		for _, v := range deployList(deployPath(w, "spec", "volumeClaimTemplates")) {
			if n, ok := deployPath(v, "metadata", "name").(string); ok {
				claimTemplates[n] = true
			}
		}
		found := false
		for _, c := range deployList(deployPath(pod, "containers")) {
			cm := deployMap(c)
			cname, _ := cm["name"].(string)
			cat := fmt.Sprintf("%s container %s", at, cname)
			command, err1 := deployArgv(cm["command"])
			args, err2 := deployArgv(cm["args"])
			if err := errors.Join(err1, err2); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", cat, err))
				continue
			}
			img, _ := cm["image"].(string)
			switch {
			case len(command) == 1 && path.Base(command[0]) == "coordinator":
			case len(command) == 0 && strings.Contains(img, "coordinator"):
				// the image's ENTRYPOINT is /coordinator
			default:
				continue
			}
			found = true
			invs = append(invs, deployInvocation{where: cat + " args", argv: args})
			env := map[string]bool{}
			for _, e := range deployList(cm["env"]) {
				if n, ok := deployMap(e)["name"].(string); ok {
					env[n] = true
				}
			}
			for _, a := range args {
				for _, m := range deployEnvRef.FindAllStringSubmatch(a, -1) {
					if !env[m[1]] {
						problems = append(problems, fmt.Sprintf("%s: %q uses $(%s), which is not in env: Kubernetes would pass it literally", cat, a, m[1]))
					}
				}
			}
			for _, m := range deployList(cm["volumeMounts"]) {
				mm := deployMap(m)
				mp, _ := mm["mountPath"].(string)
				n, _ := mm["name"].(string)
				mounts[mp] = n
				if volumes[n] == nil && !claimTemplates[n] {
					problems = append(problems, fmt.Sprintf("%s: volumeMount %s names no volume or claim template", cat, n))
				}
			}
			for probe, want := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
				if got, _ := deployPath(cm, probe, "httpGet", "path").(string); got != want {
					problems = append(problems, fmt.Sprintf("%s: %s path %q, want %s", cat, probe, got, want))
				}
			}
			// The HTTP endpoints only open once JetStream answers; without a startup probe
			// the liveness probe kills pods of a cluster that is still forming.
			if deployPath(cm, "startupProbe") == nil {
				problems = append(problems, cat+": no startupProbe: the liveness probe would kill pods while the cluster forms")
			}
			if cfg, ok := deployFlagValue(args, "config"); ok {
				dir, key := path.Split(cfg)
				vol := volumes[mounts[strings.TrimSuffix(dir, "/")]]
				cmName, _ := deployPath(vol, "configMap", "name").(string)
				if cmap := configMaps[cmName]; cmap == nil || deployMap(cmap["data"])[key] == nil {
					problems = append(problems, fmt.Sprintf("%s: --config %s is not a key of a ConfigMap mounted at %s in this file", cat, cfg, dir))
				}
			}
			if creds, ok := deployFlagValue(args, "creds"); ok {
				vol := volumes[mounts[path.Dir(creds)]]
				if deployPath(vol, "secret", "secretName") == nil {
					problems = append(problems, fmt.Sprintf("%s: --creds %s is not in a mounted Secret", cat, creds))
				}
			}
			_, external := deployFlagValue(args, "nats")
			if kind == "Deployment" && !external {
				problems = append(problems, cat+": a Deployment has no stable storage or names: use it for external mode (--nats) only")
			}
			if kind != "StatefulSet" {
				continue
			}
			// Embedded cluster: stable names, own stores, discovery through the
			// headless Service.
			if dataDir, _ := deployFlagValue(args, "data"); !claimTemplates[mounts[dataDir]] {
				problems = append(problems, fmt.Sprintf("%s: --data %q is not a volumeClaimTemplate mount", cat, dataDir))
			}
			if size, _ := deployFlagValue(args, "cluster-size"); size != strconv.Itoa(replicas) {
				problems = append(problems, fmt.Sprintf("%s: --cluster-size %q but replicas %d", cat, size, replicas))
			}
			svcName, _ := deployPath(w, "spec", "serviceName").(string)
			svc := services[svcName]
			switch {
			case svc == nil:
				problems = append(problems, fmt.Sprintf("%s: serviceName %q is not a Service in this file", at, svcName))
			case deployPath(svc, "spec", "clusterIP") != "None":
				problems = append(problems, fmt.Sprintf("%s: Service %s is not headless (clusterIP: None), so its DNS name does not list the pods", at, svcName))
			case deployPath(svc, "spec", "publishNotReadyAddresses") != true:
				problems = append(problems, fmt.Sprintf("%s: Service %s lacks publishNotReadyAddresses: true; pods become ready only after they found each other through it", at, svcName))
			case !deployLabelsMatch(deployMap(deployPath(svc, "spec", "selector")), podLabels):
				problems = append(problems, fmt.Sprintf("%s: Service %s does not select the pods", at, svcName))
			}
			if d, _ := deployFlagValue(args, "discover"); !strings.HasPrefix(d, "dns:"+svcName+".") {
				problems = append(problems, fmt.Sprintf("%s: --discover %q: want dns:%s.<namespace>.svc.cluster.local:6222", cat, d, svcName))
			}
			if pm := deployPath(w, "spec", "podManagementPolicy"); pm != "Parallel" {
				problems = append(problems, fmt.Sprintf("%s: podManagementPolicy %v: with OrderedReady the second pod waits for the first to be ready, which needs all of them", at, pm))
			}
		}
		if !found {
			problems = append(problems, at+": no container runs the coordinator")
		}
		covered := false
		for _, pdb := range pdbs {
			if deployLabelsMatch(deployMap(deployPath(pdb, "spec", "selector", "matchLabels")), podLabels) {
				covered = true
			}
		}
		if kind == "StatefulSet" && !covered {
			problems = append(problems, at+": no PodDisruptionBudget selects its pods")
		}
	}
	return invs, configs, problems
}

// deployLabelsMatch reports whether every selector label is on the pod.
func deployLabelsMatch(selector, labels map[string]any) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// --- systemd ---

// deployShellWords splits a command line like a shell (quotes, backslashes), stopping at
// redirections and control operators. Variables stay as written.
func deployShellWords(s string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				j = len(s) - i - 1
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				cur.WriteByte(s[i])
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case strings.IndexByte("<>|&;", c) >= 0:
			// A redirection or control operator ends the command; "2" of "2>&1" is no word.
			if inWord && strings.Trim(cur.String(), "0123456789") != "" {
				words = append(words, cur.String())
			}
			return words
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func deployCheckSystemd(p, bin string) ([]deployInvocation, []string) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, []string{err.Error()}
	}
	keys := map[string][]string{} // "Section.Key" -> values
	section := ""
	var pending strings.Builder
	for line := range strings.Lines(string(data)) {
		line = strings.TrimRight(line, "\r\n")
		trimmed := strings.TrimSpace(line)
		if pending.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#") || strings.HasPrefix(trimmed, ";")) {
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			pending.WriteString(s + " ")
			continue
		}
		pending.WriteString(trimmed)
		full := pending.String()
		pending.Reset()
		if strings.HasPrefix(full, "[") && strings.HasSuffix(full, "]") {
			section = full[1 : len(full)-1]
			continue
		}
		k, v, ok := strings.Cut(full, "=")
		if !ok {
			return nil, []string{fmt.Sprintf("line %q is neither [Section] nor Key=Value", full)}
		}
		keys[section+"."+strings.TrimSpace(k)] = append(keys[section+"."+strings.TrimSpace(k)], strings.TrimSpace(v))
	}
	var problems []string
	want := func(key string, ok func(string) bool, hint string) {
		vs := keys[key]
		if len(vs) == 0 || !ok(vs[len(vs)-1]) {
			problems = append(problems, fmt.Sprintf("%s = %q: %s", key, vs, hint))
		}
	}
	is := func(want string) func(string) bool { return func(v string) bool { return v == want } }
	want("Unit.Description", func(v string) bool { return v != "" }, "describe the service")
	want("Unit.After", func(v string) bool { return strings.Contains(v, "network-online.target") }, "start after network-online.target")
	want("Service.Restart", is("on-failure"), "want on-failure")
	want("Service.KillMode", is("mixed"), "want mixed: SIGTERM to the coordinator only, which stops its commands; SIGKILL to all that is left at the timeout")
	want("Service.ExecReload", func(v string) bool { return strings.Contains(v, "-HUP") && strings.Contains(v, "$MAINPID") }, "want /bin/kill -HUP $MAINPID (SIGHUP reloads the config)")
	want("Service.TimeoutStopSec", func(v string) bool {
		d, err := time.ParseDuration(v)
		if err != nil {
			n, err2 := strconv.Atoi(v)
			d, err = time.Duration(n)*time.Second, err2
		}
		return err == nil && d > 30*time.Second
	}, "want more than timing.shutdown_grace (30s), so that claims are released before SIGKILL")
	want("Service.NoNewPrivileges", is("yes"), "harden: NoNewPrivileges=yes")
	want("Service.ProtectSystem", func(v string) bool { return v == "strict" || v == "full" }, "harden: ProtectSystem=strict")
	want("Service.PrivateTmp", is("yes"), "harden: PrivateTmp=yes")
	want("Service.RestrictAddressFamilies", func(v string) bool { return strings.Contains(v, "AF_NETLINK") }, "must allow AF_NETLINK: listing interface addresses (--cluster-listen 0.0.0.0:...) needs it")
	want("Install.WantedBy", func(v string) bool { return v != "" }, "want WantedBy=multi-user.target")
	starts := keys["Service.ExecStart"]
	if len(starts) != 1 {
		return nil, append(problems, fmt.Sprintf("want one ExecStart, found %d", len(starts)))
	}
	argv := deployShellWords(strings.TrimLeft(starts[0], "-@:+!"))
	if len(argv) == 0 || path.Base(argv[0]) != "coordinator" || !path.IsAbs(argv[0]) {
		return nil, append(problems, fmt.Sprintf("ExecStart %q: want an absolute path to coordinator", starts[0]))
	}
	if dataDir, ok := deployFlagValue(argv, "data"); ok {
		if sd := keys["Service.StateDirectory"]; len(sd) > 0 && dataDir != "/var/lib/"+sd[0] {
			problems = append(problems, fmt.Sprintf("--data %s is not the StateDirectory /var/lib/%s, the only place the sandbox lets it write", dataDir, sd[0]))
		}
	}
	// systemd's own parser, when there is one: unknown keys, bad values.
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		dir, err := os.MkdirTemp("", "deploy-unit")
		if err == nil {
			defer os.RemoveAll(dir)
			unit := filepath.Join(dir, filepath.Base(p))
			text := strings.ReplaceAll(string(data), argv[0], bin)
			if err := os.WriteFile(unit, []byte(text), 0o644); err == nil {
				out, _ := exec.Command(analyze, "verify", unit).CombinedOutput()
				for line := range strings.Lines(string(out)) {
					if strings.Contains(line, filepath.Base(p)) {
						problems = append(problems, "systemd-analyze verify: "+strings.TrimSpace(strings.ReplaceAll(line, dir+"/", "")))
					}
				}
			}
		}
	}
	return []deployInvocation{{where: "ExecStart", argv: argv[1:]}}, problems
}

// --- local-cluster.sh ---

var deployShellInvocation = regexp.MustCompile(`^\s*(?:exec\s+)?"\$\{?coordinator\}?"\s+([a-z]+\b.*)$`)

func deployCheckShell(p string) ([]deployInvocation, []string) {
	var problems []string
	if out, err := exec.Command("bash", "-n", p).CombinedOutput(); err != nil {
		problems = append(problems, fmt.Sprintf("bash -n: %v\n%s", err, out))
	}
	if st, err := os.Stat(p); err == nil && st.Mode()&0o111 == 0 {
		problems = append(problems, "not executable: `make cluster` runs it directly (chmod +x, and commit the mode)")
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, append(problems, err.Error())
	}
	if !bytes.HasPrefix(data, []byte("#!/usr/bin/env bash\n")) && !bytes.HasPrefix(data, []byte("#!/bin/bash\n")) {
		problems = append(problems, "first line: want #!/usr/bin/env bash")
	}
	var invs []deployInvocation
	var logical strings.Builder
	lineNo, start := 0, 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") && logical.Len() == 0 {
			continue
		}
		if logical.Len() == 0 {
			start = lineNo
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			logical.WriteString(s + " ")
			continue
		}
		logical.WriteString(line)
		full := logical.String()
		logical.Reset()
		if m := deployShellInvocation.FindStringSubmatch(full); m != nil {
			invs = append(invs, deployInvocation{where: fmt.Sprintf("line %d", start), argv: deployShellWords(m[1])})
		}
	}
	return invs, problems
}

// TestDeployLocalCluster runs deploy/local-cluster.sh as `make cluster` does, on free ports,
// and presses Ctrl-C: all three nodes must form a cluster, run the demo worker once, and
// stop cleanly, each exactly once signalled.
func TestDeployLocalCluster(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("local-cluster.sh is a bash script for Unix")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("deploy: no bash")
	}
	root := deployRoot(t)
	bin := filepath.Join(t.TempDir(), "coordinator")
	deployBuild(t, root, "./cmd/coordinator", bin)
	client, route, httpPort := deployFreePorts(t)
	dataRoot := t.TempDir()

	var out deployBuffer
	cmd := exec.Command(bash, filepath.Join(root, "deploy", "local-cluster.sh"), bin)
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"COORD_DATA_ROOT="+dataRoot,
		"COORD_CLIENT_PORT="+strconv.Itoa(client),
		"COORD_ROUTE_PORT="+strconv.Itoa(route),
		"COORD_HTTP_PORT="+strconv.Itoa(httpPort),
		"COORD_LOG_FORMAT=json")
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, like a job in a terminal: Ctrl-C is SIGINT to that group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// The nodes run in process groups of their own: stop the ones still there by pid.
		for _, pid := range deployStartedPids(out.String()) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		if t.Failed() {
			t.Logf("local-cluster.sh output:\n%s", deployTail(out.String(), 150))
		}
	})

	// The cluster has formed: every node runs, and the demo worker runs somewhere. (A node
	// stopped while it still starts logs no "shutting down".)
	formed := func() bool {
		text := out.String()
		for i := 1; i <= 3; i++ {
			if !strings.Contains(text, fmt.Sprintf(`node%d | {`, i)) ||
				!regexp.MustCompile(fmt.Sprintf(`(?m)^node%d +\| .*"msg":"coordinator running"`, i)).MatchString(text) {
				return false
			}
		}
		return strings.Contains(text, "hello from node")
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !formed() {
		select {
		case err := <-exited:
			t.Fatalf("local-cluster.sh exited early: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the nodes did not all run, with the demo worker on one of them, within 2 minutes")
		}
	}
	pids := deployStartedPids(out.String())
	if len(pids) != 3 {
		t.Fatalf("want 3 node pids in the start line, got %v", pids)
	}

	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("local-cluster.sh after Ctrl-C: %v (want exit 0: every node stopped cleanly)", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("local-cluster.sh did not exit within 90s of Ctrl-C")
	}
	text := out.String()
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("node%d", i)
		var shutdowns, stopped int
		for line := range strings.Lines(text) {
			rest, ok := strings.CutPrefix(line, fmt.Sprintf("%-5s | ", name))
			if !ok {
				continue
			}
			switch {
			case strings.Contains(rest, `"msg":"shutting down`):
				shutdowns++
			case strings.Contains(rest, `"msg":"coordinator stopped"`):
				stopped++
			}
		}
		if shutdowns != 1 || stopped != 1 {
			t.Errorf("%s: %d shutdown and %d stopped lines with its prefix, want 1 and 1 (one signal, clean exit)", name, shutdowns, stopped)
		}
		if !strings.Contains(text, "local-cluster: "+name+" exited with status 0") {
			t.Errorf("%s did not exit with status 0", name)
		}
	}
	// The claim is not always released: when all nodes stop at once the JetStream quorum
	// may be gone before the owner's worker has stopped; it then expires after a TTL.
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("node pid %d still runs after the script exited", pid)
		}
	}
	// Nothing that the nodes started (watchdogs, the demo worker's shell and sleep) may
	// outlive them: look for our unique environment in every process.
	if runtime.GOOS == "linux" {
		var left []string
		for end := time.Now().Add(10 * time.Second); ; {
			left = deployProcsWithEnv("COORD_DATA_ROOT=" + dataRoot)
			if len(left) == 0 || time.Now().After(end) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if len(left) > 0 {
			t.Errorf("processes started by the nodes outlived them: %v", left)
		}
	}
}

// deployProcsWithEnv lists "pid cmdline" of the processes whose environment holds kv.
func deployProcsWithEnv(kv string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !slices.ContainsFunc(bytes.Split(env, []byte{0}), func(b []byte) bool { return string(b) == kv }) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, fmt.Sprintf("%d %s", pid, bytes.ReplaceAll(bytes.TrimRight(cmdline, "\x00"), []byte{0}, []byte{' '})))
	}
	return out
}

var deployPidsLine = regexp.MustCompile(`local-cluster: started .*\(pids ([0-9 ]+)\)`)

func deployStartedPids(out string) []int {
	m := deployPidsLine.FindStringSubmatch(out)
	if m == nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(m[1]) {
		if n, err := strconv.Atoi(f); err == nil && n > 1 {
			pids = append(pids, n)
		}
	}
	return pids
}

// deployFreePorts finds three runs of three free ports on 127.0.0.1 (clients, routes,
// HTTP), as local-cluster.sh numbers them.
func deployFreePorts(t *testing.T) (client, route, http int) {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(35000)
		ok := true
		for p := base; p < base+9 && ok; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base, base + 3, base + 6
		}
	}
	t.Fatal("no 9 consecutive free ports found on 127.0.0.1")
	return 0, 0, 0
}

// deployBuffer is a goroutine-safe output buffer.
type deployBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *deployBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *deployBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func deployTail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
