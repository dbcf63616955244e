package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const exampleFile = "../../deploy/coordinator.yaml"

// The annotated example validates, and shows every key there is.
func TestExampleFile(t *testing.T) {
	for _, name := range EnvNames() {
		t.Setenv(name, "")
	}
	f, err := Load(exampleFile)
	if err != nil {
		t.Fatalf("Load(%s):\n%v", exampleFile, err)
	}
	if len(f.Workers) != 2 || len(f.Jobs) != 1 {
		t.Fatalf("want 2 workers and 1 job, got %d and %d", len(f.Workers), len(f.Jobs))
	}
	if f.Workers[1].Command[0] != Shell {
		t.Errorf("the second worker should show the shell-string form, got %q", f.Workers[1].Command)
	}

	// Every key of every section is written in the file.
	sectionsAt := map[string]reflect.Type{
		"":           reflect.TypeOf(File{}),
		"node":       reflect.TypeOf(Node{}),
		"cluster":    reflect.TypeOf(Cluster{}),
		"server":     reflect.TypeOf(Server{}),
		"server.tls": reflect.TypeOf(ServerTLS{}),
		"nats":       reflect.TypeOf(NATS{}),
		"nats.tls":   reflect.TypeOf(TLS{}),
		"timing":     reflect.TypeOf(Timing{}),
		"log":        reflect.TypeOf(Log{}),
		"workers[0]": reflect.TypeOf(Worker{}),
		"jobs[0]":    reflect.TypeOf(Job{}),
	}
	for at, typ := range sectionsAt {
		for _, key := range yamlKeys(typ) {
			path := key
			if at != "" {
				path = at + "." + key
			}
			if !f.src.has(path) {
				t.Errorf("%s does not show %s", exampleFile, path)
			}
		}
	}
	// ... and every section is one of those.
	for name, typ := range sections {
		found := false
		for _, t2 := range sectionsAt {
			found = found || t2 == typ
		}
		if !found {
			t.Errorf("section type %s is not checked here", name)
		}
	}
}

// A File written back out as YAML reads the same.
func TestRoundTrip(t *testing.T) {
	data, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	f, err := parse("a.yaml", data, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	g, err := parse("b.yaml", out, envOf(nil))
	if err != nil {
		t.Fatalf("re-reading:\n%v\n%s", err, out)
	}
	f.src, g.src, f.fromEnv, g.fromEnv = nil, nil, nil, nil
	if !reflect.DeepEqual(f, g) {
		t.Errorf("round trip changed the File:\n%+v\n%+v", f, g)
	}
}

func TestLoad(t *testing.T) {
	for _, name := range EnvNames() {
		t.Setenv(name, "")
	}
	dir := t.TempDir()

	_, err := Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "config: ") {
		t.Errorf("Load(missing) = %v, want a wrapped fs.ErrNotExist", err)
	}

	path := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(path, []byte("timing:\n  ttl: 10s\n  renew_deadline: 10s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	ps := asProblems(t, err)
	if len(ps) != 1 || ps[0].File != path || ps[0].Line != 3 {
		t.Errorf("Load(bad) problems:%s", dump(ps))
	}
	// The File comes back with a validation problem, so that flags can fix it.
	f.Timing.RenewDeadline = 0
	if err := f.Validate(); err != nil {
		t.Errorf("after the fix: %v", err)
	}

	empty := filepath.Join(dir, "empty.yaml")
	if err := os.WriteFile(empty, []byte("# nothing set\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err = Load(empty)
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	f.src, f.fromEnv = nil, nil
	if !reflect.DeepEqual(f, d) {
		t.Errorf("empty file:\n%+v\nwant the defaults:\n%+v", f, d)
	}
}
