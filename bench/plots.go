package main

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.Padding = vg.Points(8)
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	return p
}

func save(p *plot.Plot, dir, name string) (string, error) {
	path := filepath.Join(dir, name)
	if err := p.Save(9*vg.Inch, 5*vg.Inch, path); err != nil {
		return "", fmt.Errorf("plot %s: %w", name, err)
	}
	return path, nil
}

// refLine draws a dashed horizontal line at y over [x0, x1] and adds it to the legend.
func refLine(p *plot.Plot, label string, y, x0, x1 float64, c color.Color) error {
	l, err := plotter.NewLine(plotter.XYs{{X: x0, Y: y}, {X: x1, Y: y}})
	if err != nil {
		return err
	}
	l.LineStyle.Color = c
	l.LineStyle.Width = vg.Points(1)
	l.LineStyle.Dashes = []vg.Length{vg.Points(5), vg.Points(4)}
	p.Add(l)
	p.Legend.Add(label, l)
	return nil
}

// failoverSeries is one set of failover samples: their values (ms) and which kills hit
// the workers stream's leader.
type failoverSeries struct {
	Label  string
	MS     []float64
	Leader []float64 // 1 when the killed node led the workers stream
	RefMS  float64   // reference median, 0 for none
}

// plotFailover draws, for each kill, the time from the signal to the worker running
// elsewhere; kills of the workers stream's leader are drawn as triangles.
func plotFailover(dir string, series []failoverSeries) (string, error) {
	p := newPlot("Failover after SIGKILL of the owner (each point one kill)", "kill #", "seconds until the worker runs elsewhere")
	maxN := 1
	for _, s := range series {
		maxN = max(maxN, len(s.MS))
	}
	for i, s := range series {
		if len(s.MS) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(s.MS))
		for k, v := range s.MS {
			xys[k] = plotter.XY{X: float64(k + 1), Y: v / 1000}
		}
		sc, err := plotter.NewScatter(xys)
		if err != nil {
			return "", err
		}
		c := palette[i%len(palette)]
		leader := s.Leader
		sc.GlyphStyleFunc = func(k int) draw.GlyphStyle {
			g := draw.GlyphStyle{Color: c, Radius: vg.Points(4), Shape: draw.CircleGlyph{}}
			if k < len(leader) && leader[k] == 1 {
				g.Shape = draw.TriangleGlyph{}
				g.Radius = vg.Points(5)
			}
			return g
		}
		sc.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(4), Shape: draw.CircleGlyph{}}
		p.Add(sc)
		p.Legend.Add(s.Label+" (triangle: killed node led the workers stream)", sc)
		if s.RefMS > 0 {
			if err := refLine(p, fmt.Sprintf("etcd median at %s: %.2f s", s.Label, s.RefMS/1000), s.RefMS/1000, 0.5, float64(maxN)+0.5, c); err != nil {
				return "", err
			}
		}
	}
	p.Y.Min = 0
	p.Y.Max *= 1.1
	p.Legend.Top = false // failovers take seconds: the bottom of the plot stays empty
	return save(p, dir, "failover_timeline.png")
}

// plotHandoff draws each graceful handoff's time from SIGTERM to the worker running
// elsewhere.
func plotHandoff(dir string, msVals []float64, refMS float64) (string, error) {
	p := newPlot("Handoff after SIGTERM of the owner (each point one handoff)", "handoff #", "milliseconds until the worker runs elsewhere")
	xys := make(plotter.XYs, len(msVals))
	for k, v := range msVals {
		xys[k] = plotter.XY{X: float64(k + 1), Y: v}
	}
	sc, err := plotter.NewScatter(xys)
	if err != nil {
		return "", err
	}
	sc.GlyphStyle = draw.GlyphStyle{Color: palette[0], Radius: vg.Points(4), Shape: draw.CircleGlyph{}}
	p.Add(sc)
	p.Legend.Add("ours", sc)
	if err := refLine(p, fmt.Sprintf("etcd: %.1f ms", refMS), refMS, 0.5, float64(len(msVals))+0.5, palette[1]); err != nil {
		return "", err
	}
	p.Y.Min = 0
	p.Y.Max *= 1.15
	return save(p, dir, "handoff.png")
}

// latencySeries is a named set of latencies.
type latencySeries struct {
	Label string
	D     []time.Duration
}

// plotLatencyCDF draws the cumulative distribution of each series on a log time axis.
func plotLatencyCDF(dir, file, title string, series []latencySeries) (string, error) {
	p := newPlot(title, "milliseconds (log scale)", "fraction of samples at most this long")
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = false
	p.Legend.Left = false
	p.Legend.YOffs = vg.Points(20)
	drawn := 0
	for i, s := range series {
		if len(s.D) == 0 {
			continue
		}
		v := make([]float64, len(s.D))
		for k, d := range s.D {
			v[k] = max(ms(d), 0.001)
		}
		sort.Float64s(v)
		// The empirical CDF as steps; long series thinned to about 2,000 steps.
		step := max(1, len(v)/2000)
		xys := plotter.XYs{{X: v[0], Y: 0}}
		for k := 0; k < len(v); k += step {
			xys = append(xys, plotter.XY{X: v[k], Y: float64(k) / float64(len(v))},
				plotter.XY{X: v[k], Y: float64(min(k+step, len(v))) / float64(len(v))})
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return "", err
		}
		l.LineStyle.Color = palette[i%len(palette)]
		l.LineStyle.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s (median %s ms, p99 %s ms, n=%d)", s.Label, num(median(v)), num(quantile(v, 0.99)), len(v)), l)
		drawn++
	}
	if drawn == 0 {
		return "", nil
	}
	p.Y.Min, p.Y.Max = 0, 1
	p.X.Max *= 1.5 // room for the last step
	return save(p, dir, file)
}

// plotBalance draws each holder's owned count.
func plotBalance(dir string, counts map[string]int) (string, error) {
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	sort.Strings(names)
	vals := make(plotter.Values, len(names))
	for i, n := range names {
		vals[i] = float64(counts[n])
	}
	p := newPlot("Workers owned per process (3 holders × 1,000 workers, converged)", "holder", "workers owned")
	bars, err := plotter.NewBarChart(vals, vg.Points(80))
	if err != nil {
		return "", err
	}
	bars.Color = palette[0]
	p.Add(bars)
	p.NominalX(names...)
	p.Y.Min = 0
	return save(p, dir, "balance.png")
}

// num formats a value with three significant digits, without an exponent.
func num(v float64) string {
	return strconv.FormatFloat(v, 'f', max(0, 2-int(math.Floor(math.Log10(math.Abs(v)+1e-9)))), 64)
}
