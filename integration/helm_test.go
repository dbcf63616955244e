package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const helmChart = "../deploy/helm/coordinator"

// helmTool finds helm on PATH or where `go install` puts it, or skips the test.
func helmTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	for _, dir := range []string{os.Getenv("GOBIN"), filepath.Join(os.Getenv("GOPATH"), "bin"), filepath.Join(os.Getenv("HOME"), "go", "bin")} {
		if p := filepath.Join(dir, "helm"); dir != "" && deployFileExists(p) {
			return p
		}
	}
	t.Skip("Helm chart tests skipped: helm not found; install it with `go install helm.sh/helm/v3/cmd/helm@v3.22.0` (as .ci/run does)")
	return ""
}

// TestHelmChart lints the chart and renders it with several sets of values; each
// rendering passes the checks that TestDeployFiles applies to deploy/kubernetes/, and every
// coordinator command line in it uses flags that `coordinator run -h` lists.
func TestHelmChart(t *testing.T) {
	t.Parallel()
	helm := helmTool(t)
	flags := &deployFlags{t: t, bin: bins.Coordinator, sets: map[string]deployFlagSet{}, errs: map[string]error{}}
	run, err := flags.of("run")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(helm, "lint", "--strict", helmChart).CombinedOutput(); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}

	cases := []struct {
		name string
		set  []string
		// Also true of the rendering, besides deployCheckKubernetes.
		want []string
		// Flags that this binary may not have yet (they come with the embedded server's
		// security): the flag check runs only where it has them.
		newFlags []string
	}{
		{name: "default", want: []string{"kind: StatefulSet", "--cluster-size=3", "replicas: 3", "preferredDuringSchedulingIgnoredDuringExecution",
			"name: COORD_NATS_PASSWORD", "key: password", "name: COORD_HTTP_TOKEN", "kind: PodDisruptionBudget", "maxUnavailable: 1", "memory: 512Mi",
			"--server-tls-cert=/etc/coordinator/tls/tls.crt", "--server-tls-ca=/etc/coordinator/tls/ca.crt", "secretName: coordinator-tls"},
			newFlags: []string{"server-tls-cert"}},
		{name: "five replicas", set: []string{"replicaCount=5"}, want: []string{"--cluster-size=5", "replicas: 5"},
			newFlags: []string{"server-tls-cert"}},
		{name: "client certificates", set: []string{"tls.verifyClients=true", "tls.secretName=my-tls", "podAntiAffinity=hard"},
			want: []string{"--server-tls-verify-clients", "secretName: my-tls", "mountPath: /etc/coordinator/tls",
				"requiredDuringSchedulingIgnoredDuringExecution"},
			newFlags: []string{"server-tls-cert"}},
		{name: "insecure", set: []string{"tls.enabled=false", "insecure=true", "auth.existingSecret="},
			want: []string{"--insecure"}, newFlags: []string{"insecure"}},
		{name: "external", set: []string{"mode=external", "external.tlsCASecret=nats-ca"},
			want: []string{"kind: Deployment", "--nats=nats://nats.nats.svc.cluster.local:4222", "secretName: coordinator-nats-creds",
				"--tls-ca=/etc/coordinator-nats-ca/ca.crt", "name: COORD_HTTP_TOKEN"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", "coordinator", helmChart}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			out, err := exec.Command(helm, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("the rendering has no %q", w)
				}
			}
			p := filepath.Join(t.TempDir(), "rendered.yaml")
			if err := os.WriteFile(p, out, 0o644); err != nil {
				t.Fatal(err)
			}
			invs, configs, problems := deployCheckKubernetes(p)
			for _, pr := range problems {
				t.Error(pr)
			}
			if len(invs) == 0 {
				t.Error("no coordinator command line in the rendering")
			}
			checkFlags := true
			for _, f := range tc.newFlags {
				if _, ok := run[f]; !ok {
					t.Logf("flags not checked: this binary has no --%s yet", f)
					checkFlags = false
				}
			}
			for _, inv := range invs {
				if checkFlags {
					for _, pr := range flags.check(inv) {
						t.Error(pr)
					}
				}
			}
			for name, content := range configs {
				cfg := filepath.Join(t.TempDir(), "coordinator.yaml")
				if err := os.WriteFile(cfg, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command(bins.Coordinator, "check", "--config", cfg).CombinedOutput(); err != nil {
					t.Errorf("%s does not pass `coordinator check`: %v\n%s", name, err, out)
				}
			}
		})
	}

	// Values the chart refuses, with a message that says what to do.
	for _, bad := range []struct{ set, says string }{
		{"replicaCount=4", "odd number of pods"},
		{"tls.enabled=false", "routes between the pods need TLS"},
		{"auth.existingSecret=", "set auth.existingSecret"},
	} {
		out, err := exec.Command(helm, "template", "coordinator", helmChart, "--set", bad.set).CombinedOutput()
		if err == nil || !strings.Contains(string(out), bad.says) {
			t.Errorf("helm template --set %s: want a failure saying %q, got %v\n%s", bad.set, bad.says, err, out)
		}
	}
}
