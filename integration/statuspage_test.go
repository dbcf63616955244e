package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jetcoord/coordinator/internal/cluster"
)

// chromium finds a Chromium to drive, or skips the test: $CHROME_PATH, then the names
// Debian and others install it under.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROME_PATH"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("status page test skipped: no Chromium found; install Debian's chromium package (apt-get install -y chromium, as .ci/run does) or set CHROME_PATH")
	return ""
}

// pageView is what the status page shows, read from its DOM.
type pageView struct {
	Nodes    []string          `json:"nodes"`    // live node cards
	Gone     []string          `json:"gone"`     // cards of nodes without a record
	Workers  map[string]string `json:"workers"`  // worker -> node card it is drawn in
	Jobs     []string          `json:"jobs"`     // job rows
	Events   int               `json:"events"`   // timeline entries
	Claims   []string          `json:"claims"`   // "worker@node" of claimed events since the kill
	Live     int               `json:"live"`     // timeline entries published since the page opened
	Conn     string            `json:"conn"`     // live, down, connecting
	Marker   bool              `json:"marker"`   // window.noReload survived: no reload happened
	Overflow bool              `json:"overflow"` // wider than the viewport
}

const readView = `(() => {
  const q = (s) => [...document.querySelectorAll(s)];
  const workers = {};
  for (const li of q("#nodes li[data-worker]")) workers[li.dataset.worker] = li.dataset.node;
  return {
    nodes: q('#nodes section[data-live="true"]').map((e) => e.dataset.node),
    gone: q('#nodes section[data-live="false"]').map((e) => e.dataset.node),
    workers,
    jobs: q("#jobs tr[data-job]").map((e) => e.dataset.job),
    events: q("#timeline li").length,
    claims: q('#timeline li[data-type="claimed"]').filter((e) => Number(e.dataset.time) >= window.killedAt)
      .map((e) => e.dataset.name + "@" + e.dataset.node),
    live: q("#timeline li").filter((e) => Number(e.dataset.time) > window.openedAt).length,
    conn: document.getElementById("conn").dataset.state,
    marker: window.noReload === 1,
    overflow: document.documentElement.scrollWidth > window.innerWidth,
  };
})()`

// TestStatusPage loads the status page of a three-node cluster in headless Chromium, sees
// every node, worker and job, SIGKILLs the owner of a worker and sees the move appear on the
// same page, without a reload. It logs the page's size and how long events take to show.
// STATUS_PAGE_SCREENSHOT=file.png saves a screenshot (the README's docs/status-page.png).
func TestStatusPage(t *testing.T) {
	chrome := chromium(t)
	t.Parallel()
	workers := []string{"billing", "emails", "indexer", "reports", "sync", "webhooks"}
	var cfg strings.Builder
	cfg.WriteString("workers:\n")
	for _, w := range workers {
		fmt.Fprintf(&cfg, "  - name: %s\n    command: 'sleep 600'\n", w)
	}
	cfg.WriteString("jobs:\n  - name: nightly-report\n    schedule: '0 3 * * *'\n    command: 'true'\n" +
		"  - name: heartbeat\n    schedule: '@every 3s'\n    command: 'true'\n")
	c := startCluster(t, cluster.Options{TTL: 2 * time.Second, Config: cfg.String()})
	for _, w := range workers {
		if _, err := c.WaitOwner(w, takeoverTimeout, nil); err != nil {
			t.Fatal(err)
		}
	}
	page := c.Node(0)
	url := "http://" + page.HTTPAddr() + "/"
	t.Logf("status page: %s; size %d bytes (HTML, CSS and JS, uncompressed)", url, pageSize(t, url))

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx, append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1100, 900))...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer bcancel()
	defer func() { _ = chromedp.Cancel(bctx) }() // closes the browser and waits for it

	if err := chromedp.Do(bctx, chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS("#timeline")),
		chromedp.Evaluate[chromedp.Void](`window.openedAt = Date.now(); undefined`)); err != nil {
		t.Fatalf("loading %s in Chromium: %v", url, err)
	}
	view := func() pageView {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[pageView](readView))
		if err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		return v
	}
	waitView := func(what string, cond func(pageView) bool) pageView {
		t.Helper()
		var v pageView
		if err := cluster.WaitFor(takeoverTimeout, what, func() bool { v = view(); return cond(v) }); err != nil {
			t.Fatalf("%v; the page shows %+v", err, v)
		}
		return v
	}

	// Every node and worker, where the cluster says they are (placement may still move a
	// worker right after the start: compare with a fresh status each time).
	owners := map[string]string{}
	v := waitView("the page to show 3 nodes, every worker at its owner and the jobs", func(v pageView) bool {
		truth, err := page.Status()
		if err != nil {
			return false
		}
		clear(owners)
		for _, w := range truth.Workers {
			owners[w.Worker] = w.Node
		}
		sort.Strings(v.Nodes)
		return strings.Join(v.Nodes, ",") == "n0,n1,n2" && fmt.Sprint(v.Workers) == fmt.Sprint(owners) &&
			len(v.Jobs) == 2 && v.Conn == "live" && v.Events > 0
	})
	t.Logf("page shows nodes %v, workers %v, jobs %v, %d events", v.Nodes, v.Workers, v.Jobs, v.Events)
	// A few events published while the page is open (the heartbeat job's) for the
	// steady-state latency.
	waitView("the timeline to show new events as they happen", func(v pageView) bool { return v.Live >= 4 })

	// Kill the owner of a worker (not the node serving the page) and watch the page.
	var victim *cluster.Node
	var moved string
	for _, w := range workers {
		if n := c.NodeByName(owners[w]); n != page {
			victim, moved = n, w
			break
		}
	}
	if victim == nil {
		t.Fatalf("every worker runs on %s; placement should spread them: %v", page.Name(), owners)
	}
	if err := chromedp.Do(bctx, chromedp.Evaluate[chromedp.Void](`window.noReload = 1; window.killedAt = Date.now(); undefined`)); err != nil {
		t.Fatal(err)
	}
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s, owner of %s", victim.Name(), moved)
	// The move must show on the worker cards, and the timeline must go on updating (claims
	// after the kill). The claim event of the moved worker itself can be lost: events are
	// published with core NATS, and one published while the events stream elects a new
	// leader (the killed node may have led it) never reaches the stream.
	v = waitView(fmt.Sprintf("the page to show %s on a live node other than %s", moved, victim.Name()), func(v pageView) bool {
		to := v.Workers[moved]
		return to != "" && to != victim.Name() && slices.Contains(v.Nodes, to)
	})
	to := v.Workers[moved]
	if len(v.Claims) == 0 {
		// Every claim since the kill went out while the events stream had no leader (the
		// takeovers come together, as soon as the workers' stream has one): make one now.
		if _, err := c.NodeByName(to).CLI(ctx, "release", moved); err != nil {
			t.Fatal(err)
		}
		v = waitView("claims after the kill in the timeline", func(v pageView) bool {
			to := v.Workers[moved]
			return len(v.Claims) > 0 && to != "" && to != victim.Name() && slices.Contains(v.Nodes, to)
		})
		to = v.Workers[moved]
	}
	if path := os.Getenv("STATUS_PAGE_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot after the move: %s", path)
	}

	v = waitView(fmt.Sprintf("the page to drop %s from the live nodes", victim.Name()), func(v pageView) bool {
		return len(v.Nodes) == 2 && !slices.Contains(v.Nodes, victim.Name())
	})
	if !v.Marker {
		t.Fatal("the page was reloaded; it must update itself")
	}

	// Latency from each event's time to its drawing, for the events published while the
	// page was open: in steady state, and after the kill, when the events stream may wait
	// for a new leader (the killed node may have led it); and from the new owner's claim to
	// the worker drawn on its new node.
	type latencies struct {
		Steady []float64 `json:"steady"`
		Kill   []float64 `json:"kill"`
		Claim  float64   `json:"claim"`
		Moved  float64   `json:"moved"`
	}
	js := fmt.Sprintf(`(() => {
  const rows = [...document.querySelectorAll("#timeline li")];
  const lat = (e) => Number(e.dataset.received) - Number(e.dataset.time);
  const claim = rows.find((e) => e.dataset.name === %[1]q && e.dataset.type === "claimed" && e.dataset.node === %[2]q &&
    Number(e.dataset.time) >= window.killedAt);
  return {
    steady: rows.filter((e) => Number(e.dataset.time) > window.openedAt && Number(e.dataset.time) < window.killedAt).map(lat),
    kill: rows.filter((e) => Number(e.dataset.time) >= window.killedAt).map(lat),
    claim: claim ? lat(claim) : -1,
    moved: claim ? window.coordSeen[%[1]q + "@" + %[2]q] - Number(claim.dataset.time) : -1,
  };
})()`, moved, to)
	lat, err := chromedp.Run(bctx, chromedp.Evaluate[latencies](js))
	if err != nil {
		t.Fatal(err)
	}
	if lat.Claim < 0 {
		t.Logf("the timeline has no 'claimed' event of %s on %s (published while the events stream had no leader?)", moved, to)
	}
	durs := func(msl []float64) []time.Duration {
		var out []time.Duration
		for _, m := range msl {
			out = append(out, time.Duration(m*float64(time.Millisecond)))
		}
		return out
	}
	msd := func(m float64) string { return ms(time.Duration(m * float64(time.Millisecond))) }
	t.Logf("%s moved %s -> %s on the page without a reload", moved, victim.Name(), to)
	t.Logf("event to timeline, steady state: %s", summary(durs(lat.Steady)))
	t.Logf("event to timeline, after the kill: %s; the claim of %s on %s: %s to the timeline, %s to its node card",
		summary(durs(lat.Kill)), moved, to, msd(lat.Claim), msd(lat.Moved))

	// A phone-sized screen: nothing wider than the viewport.
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(390, 844)); err != nil {
		t.Fatal(err)
	}
	if v := view(); v.Overflow {
		t.Error("on a 390 px wide screen the page is wider than the screen")
	}
	if path := os.Getenv("STATUS_PAGE_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		phone := strings.TrimSuffix(path, ".png") + "-phone.png"
		if err := os.WriteFile(phone, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("phone-sized screenshot: %s", phone)
	}
}

// pageSize is the bytes of the page and the assets it loads.
func pageSize(t *testing.T, url string) int {
	t.Helper()
	total := 0
	for _, p := range []string{"", "ui/style.css", "ui/app.js"} {
		resp, err := http.Get(url + p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s%s: %v %s", url, p, err, resp.Status)
		}
		total += len(b)
	}
	return total
}
