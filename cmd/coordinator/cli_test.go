package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Every subcommand answers -h and --help with its usage on stdout and exit 0, and the
// usage names its positional arguments.
func TestHelpExitsZeroEverywhere(t *testing.T) {
	args := map[string]string{"call": "WORKER REQUEST", "release": "WORKER", "drain": "NODE", "logs": "WORKER",
		"jobs": "NAME", "check": "FILE", "completion": "bash|zsh|fish"}
	for _, c := range commands() {
		for _, h := range []string{"-h", "--help"} {
			var out, errb bytes.Buffer
			if code := cli([]string{c.name, h}, &out, &errb); code != 0 {
				t.Errorf("coordinator %s %s: exit %d, want 0 (stderr %q)", c.name, h, code, errb.String())
			}
			if !strings.HasPrefix(out.String(), "usage: coordinator "+c.name) {
				t.Errorf("coordinator %s %s: stdout %q, want the usage", c.name, h, out.String())
			}
			if a := args[c.name]; a != "" && !strings.Contains(out.String(), a) {
				t.Errorf("coordinator %s %s: usage does not show the arguments %s:\n%s", c.name, h, a, out.String())
			}
		}
		var out, errb bytes.Buffer
		if code := cli([]string{c.name, "--no-such-flag"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "usage: coordinator "+c.name) {
			t.Errorf("coordinator %s --no-such-flag: exit %d, stderr %q; want 2 and the usage", c.name, code, errb.String())
		}
	}
	for _, h := range []string{"-h", "--help", "help"} {
		var out bytes.Buffer
		if code := cli([]string{h}, &out, &out); code != 0 {
			t.Errorf("coordinator %s: exit %d", h, code)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		var out bytes.Buffer
		if code := cli(args, &out, &out); code != 0 || out.String() != "coordinator "+Version+"\n" {
			t.Errorf("coordinator %v: exit %d, %q", args, code, out.String())
		}
	}
	var out bytes.Buffer
	if code := cli([]string{"version", "--json"}, &out, &out); code != 0 {
		t.Fatalf("version --json: exit %d", code)
	}
	var v map[string]string
	if err := json.Unmarshal(out.Bytes(), &v); err != nil || v["version"] != Version || v["go"] == "" {
		t.Fatalf("version --json = %q (%v)", out.String(), err)
	}
}

// The completion scripts name every command and its flags, and each shell that is
// installed accepts its script.
func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		var out, errb bytes.Buffer
		if code := cli([]string{"completion", sh}, &out, &errb); code != 0 {
			t.Fatalf("completion %s: exit %d: %s", sh, code, errb.String())
		}
		for _, want := range []string{"status", "logs", "--follow", "--json", "--wait"} {
			if !strings.Contains(out.String(), strings.TrimPrefix(want, "--")) {
				t.Errorf("completion %s lacks %s", sh, want)
			}
		}
		bin, err := exec.LookPath(sh)
		if err != nil {
			t.Logf("%s not installed: syntax not checked", sh)
			continue
		}
		f := filepath.Join(t.TempDir(), "completion."+sh)
		if err := os.WriteFile(f, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, err := exec.Command(bin, "-n", f).CombinedOutput(); err != nil {
			t.Errorf("%s -n on the %s completion: %v\n%s", sh, sh, err, b)
		}
	}
	var out, errb bytes.Buffer
	if code := cli([]string{"completion", "tcsh"}, &out, &errb); code != 2 {
		t.Errorf("completion tcsh: exit %d, want 2", code)
	}
}
