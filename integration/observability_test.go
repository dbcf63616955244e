package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jetcoord/coordinator/internal/cluster"
)

const (
	alertRules = "../deploy/prometheus/alerts.yaml"
	alertTests = "../deploy/prometheus/alerts_test.yaml"
	dashboard  = "../deploy/grafana/coordinator.json"
)

// promtool finds promtool or skips the test.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("alert rule tests skipped: promtool not found; install Debian's prometheus package (apt-get install -y prometheus, as .ci/run does)")
	}
	return p
}

// TestAlertRules: promtool accepts the rules and their unit tests pass.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	bin := promtool(t)
	for _, args := range [][]string{{"check", "rules", alertRules}, {"test", "rules", alertTests}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// metricName matches the names of the daemon's own, Go runtime and process metrics in a
// query (PromQL functions and labels have no such prefix).
var metricName = regexp.MustCompile(`\b(?:coordinator|go|process)_[a-z0-9_]+\b`)

// dashboardQueries returns every query of the dashboard: panel targets and variables.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	var out []string
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("%s: panel id %d used twice", dashboard, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("%s: panel %q does not use the ${datasource} variable", dashboard, p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", dashboard, p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		out = append(out, v.Definition)
	}
	return out
}

// exported returns the sample names of one scrape of url.
func exported(url string) (map[string]bool, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names, sc.Err()
}

// TestDashboardAndAlertMetricsExported: every metric that the Grafana dashboard and the
// alert rules query is in a real node's /metrics.
func TestDashboardAndAlertMetricsExported(t *testing.T) {
	t.Parallel()
	rules, err := os.ReadFile(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string][]string{} // name -> where
	for _, q := range dashboardQueries(t) {
		for _, n := range metricName.FindAllString(q, -1) {
			used[n] = append(used[n], filepath.Base(dashboard))
		}
	}
	for _, n := range metricName.FindAllString(string(rules), -1) {
		used[n] = append(used[n], filepath.Base(alertRules))
	}
	if len(used) < 10 {
		t.Fatalf("found only %d metric names in the dashboard and rules: is the pattern right? %v", len(used), used)
	}

	cfg := "workers:\n  - name: billing\n    command: 'sleep 600'\njobs:\n  - name: nightly\n    schedule: '0 3 * * *'\n    command: 'true'\n"
	c := startCluster(t, cluster.Options{Nodes: 1, TTL: 2 * time.Second, Config: cfg})
	if _, err := c.WaitOwner("billing", takeoverTimeout, nil); err != nil {
		t.Fatal(err)
	}
	url := "http://" + c.Node(0).HTTPAddr() + "/metrics"
	var missing []string
	err = cluster.WaitFor(time.Minute, "every metric of the dashboard and the rules in /metrics", func() bool {
		names, err := exported(url)
		if err != nil {
			return false
		}
		missing = missing[:0]
		for n := range used {
			if !names[n] {
				missing = append(missing, n)
			}
		}
		return len(missing) == 0
	})
	if err != nil {
		sort.Strings(missing)
		for _, n := range missing {
			t.Errorf("%s is queried by %s but %s does not export it", n, strings.Join(used[n], ", "), url)
		}
	}
	t.Logf("%d metric names used by the dashboard and the alert rules, all exported", len(used))
}
