package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Figure is one measured number: printed as "name value unit", kept in results.json.
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"` // NaN for n/a (written as null)
	Unit  string  `json:"unit"`
	Note  string  `json:"note,omitempty"`
}

// MarshalJSON writes NaN as null.
func (f Figure) MarshalJSON() ([]byte, error) {
	type plain struct {
		Name  string   `json:"name"`
		Value *float64 `json:"value"`
		Unit  string   `json:"unit"`
		Note  string   `json:"note,omitempty"`
	}
	p := plain{Name: f.Name, Unit: f.Unit, Note: f.Note}
	if !math.IsNaN(f.Value) && !math.IsInf(f.Value, 0) {
		v := f.Value
		p.Value = &v
	}
	return json.Marshal(p)
}

// countUnits are the units of figures that count things, printed without decimals.
var countUnits = map[string]bool{"releases": true, "workers": true}

func (f Figure) valueString() string {
	switch {
	case math.IsNaN(f.Value):
		return "n/a"
	case math.IsInf(f.Value, 1):
		return "inf"
	case countUnits[f.Unit]:
		return strconv.FormatFloat(f.Value, 'f', -1, 64)
	case f.Value >= 100:
		return strconv.FormatFloat(f.Value, 'f', 0, 64)
	case f.Value >= 10:
		return strconv.FormatFloat(f.Value, 'f', 1, 64)
	default:
		return strconv.FormatFloat(f.Value, 'f', 2, 64)
	}
}

// Line is the figure as printed: "name value unit", or "name n/a" when not measured.
func (f Figure) Line() string {
	if math.IsNaN(f.Value) {
		return f.Name + " n/a"
	}
	return f.Name + " " + f.valueString() + " " + f.Unit
}

// Reference is what users compare a figure with.
type Reference struct {
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	What  string  `json:"what"`
}

// ReferenceSource names the system the references were measured on.
const ReferenceSource = "etcd v3.7.3 election recipe, same kind of machine"

// references are the etcd figures users compare with, by figure name.
var references = map[string]Reference{
	"failover_kill_ms_ttl2s_median": {1990, "ms", "kill failover median at TTL 2s"},
	"failover_kill_ms_ttl5s_median": {4390, "ms", "kill failover median at TTL 5s"},
	// The same etcd figures next to our kills of a node that did not lead the workers
	// stream: there only the lease runs out, as in etcd where no etcd member dies.
	"failover_kill_ms_ttl2s_not_stream_leader_median": {1990, "ms", "kill failover median at TTL 2s"},
	"failover_kill_ms_ttl5s_not_stream_leader_median": {4390, "ms", "kill failover median at TTL 5s"},
	"handoff_ms_median":      {2.6, "ms", "handoff"},
	"claims_per_s_1node_seq": {836, "claims/s", "one at a time"},
	"claims_per_s_3node_seq": {836, "claims/s", "one at a time"},
	"claims_per_s_1node_c32": {4659, "claims/s", "32 concurrent"},
	"claims_per_s_3node_c32": {4659, "claims/s", "32 concurrent"},
	"balance_max_over_min":   {816.0 / 20, "ratio", "balance 816/20"},
}

// Results collects the figures, prints each as it comes and writes results.json.
type Results struct {
	out io.Writer

	mu      sync.Mutex
	Started time.Time            `json:"started"`
	Elapsed float64              `json:"elapsed_s"`
	Machine map[string]any       `json:"machine"`
	Figures []Figure             `json:"figures"`
	Refs    map[string]any       `json:"reference"`
	Samples map[string][]float64 `json:"samples"` // raw samples behind the figures (ms, or as named)
	Notes   []string             `json:"notes,omitempty"`
}

func newResults(out io.Writer) *Results {
	host, _ := os.Hostname()
	return &Results{
		out:     out,
		Started: time.Now(),
		Machine: map[string]any{"cpus": runtime.NumCPU(), "go": runtime.Version(), "os": runtime.GOOS + "/" + runtime.GOARCH, "host": host, "loadavg_start": loadavg()},
		Samples: map[string][]float64{},
	}
}

// Add records and prints a figure.
func (r *Results) Add(name string, value float64, unit string) {
	r.add(Figure{Name: name, Value: value, Unit: unit})
}

// NA records a figure that could not be measured, and why.
func (r *Results) NA(name, why string) {
	r.add(Figure{Name: name, Value: math.NaN(), Note: why})
}

func (r *Results) add(f Figure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Figures = append(r.Figures, f)
	fmt.Fprintln(r.out, f.Line())
}

// Sample keeps raw samples for results.json and the plots.
func (r *Results) Sample(name string, vs ...float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Samples[name] = append(r.Samples[name], vs...)
}

// Note keeps a remark for results.json.
func (r *Results) Note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Write writes results.json into dir.
func (r *Results) Write(dir string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Elapsed = time.Since(r.Started).Seconds()
	r.Machine["loadavg_end"] = loadavg()
	r.Refs = map[string]any{"source": ReferenceSource, "figures": references}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.json"), append(data, '\n'), 0o644)
}

// Compare prints our figures next to the references, as comment lines (#) so that a
// reader of the "name value unit" lines can skip them.
func (r *Results) Compare() {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.out, "# compared with %s (load average at start %s, now %s):\n", ReferenceSource, r.Machine["loadavg_start"], loadavg())
	tw := tabwriter.NewWriter(r.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "# figure\tours\tetcd\t")
	for _, f := range r.Figures {
		ref, ok := references[f.Name]
		if !ok {
			continue
		}
		fmt.Fprintf(tw, "# %s\t%s %s\t%s %s\t\n", f.Name, f.valueString(), f.Unit, Figure{Value: ref.Value}.valueString(), ref.Unit)
	}
	tw.Flush()
}

// Stats.

// median is the middle sample, or the mean of the two middle ones. NaN for no samples.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// quantile returns the q-quantile of vs by nearest rank (q=0.5 the median, 0.99 the p99;
// with ten samples the p99 is the largest). NaN for no samples.
func quantile(vs []float64, q float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// loadavg is /proc/loadavg's first three fields: other work on the machine skews the
// figures, so the results say how busy it was.
func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
