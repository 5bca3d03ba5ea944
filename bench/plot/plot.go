// Package plot draws bench results as PNGs with gonum.org/v1/plot:
// overhead against sample rate with 95% CI error bars, BPF cost per
// program, latency percentiles, agent CPU, and kernels side by side.
package plot

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
)

// Figure is one written PNG.
type Figure struct {
	File    string // base name inside the output directory
	Caption string
}

// All writes every figure the results support into dir.
func All(f *results.File, dir string) ([]Figure, error) {
	var figs []Figure
	for _, draw := range []func(*results.File, string) ([]Figure, error){
		CostPerOp, OverheadCurves, BPFCost, Latency, AgentCPU, ScaleCurves,
	} {
		got, err := draw(f, dir)
		if err != nil {
			return figs, err
		}
		figs = append(figs, got...)
	}
	return figs, nil
}

func ok(f *results.File) []results.Cell { return f.Measured() }

// errPoints are points with asymmetric y errors (CI low/high).
type errPoints struct {
	plotter.XYs
	plotter.YErrors
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	return p
}

func save(p *plot.Plot, dir, name string, w vg.Length) error {
	if err := p.Save(w, 4*vg.Inch, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("plot %s: %w", name, err)
	}
	return nil
}

// nominalX labels integer x positions, tilted so long cell names fit.
func nominalX(p *plot.Plot, labels []string) {
	ticks := make([]plot.Tick, len(labels))
	for i, l := range labels {
		ticks[i] = plot.Tick{Value: float64(i), Label: l}
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.X.Tick.Label.Rotation = math.Pi / 8
	p.X.Tick.Label.XAlign = text.XRight
	p.X.Min, p.X.Max = -0.7, float64(len(labels))-0.3
}

func zeroLine(p *plot.Plot) {
	l, err := plotter.NewLine(plotter.XYs{{X: p.X.Min, Y: 0}, {X: p.X.Max, Y: 0}})
	if err == nil {
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		l.Color = color.Gray{Y: 128}
		p.Add(l)
	}
}

// OverheadCurves draws throughput overhead against sample rate, one file per
// workload and transport, a line per map type, 95% CI as error bars. The x
// axis is log10(sample rate); the no-observer (A/A) cell is a reference at x
// left of rate 1, so the harness's own bias is visible next to the curve.
func OverheadCurves(f *results.File, dir string) ([]Figure, error) {
	type panel struct{ workload, transport string }
	lines := map[panel]map[string][]results.Cell{}
	aa := map[string]results.Cell{}
	for _, c := range ok(f) {
		if c.SampleRate == matrix.Off {
			aa[c.Workload] = c
			continue
		}
		if c.BPFStats != matrix.DefaultStats {
			continue
		}
		k := panel{c.Workload, c.Transport}
		if lines[k] == nil {
			lines[k] = map[string][]results.Cell{}
		}
		lines[k][c.MapType] = append(lines[k][c.MapType], c)
	}
	var panels []panel
	for k := range lines {
		panels = append(panels, k)
	}
	sort.Slice(panels, func(i, j int) bool {
		return panels[i].workload+panels[i].transport < panels[j].workload+panels[j].transport
	})
	var figs []Figure
	for _, k := range panels {
		p := newPlot(fmt.Sprintf("Throughput overhead: %s, %s", k.workload, k.transport),
			"sample rate (1 = every event; log scale)", "throughput overhead % (95% CI)")
		maps := sortedKeys(lines[k])
		maxRate := 1.0
		for i, m := range maps {
			cells := lines[k][m]
			sort.Slice(cells, func(a, b int) bool { return cells[a].SampleRate < cells[b].SampleRate })
			pts := errPoints{}
			for _, c := range cells {
				x := math.Log10(float64(c.SampleRate)) + float64(i)*0.03 // dodge overlapping bars
				pts.XYs = append(pts.XYs, plotter.XY{X: x, Y: c.ThroughputOverheadPct})
				pts.YErrors = append(pts.YErrors, struct{ Low, High float64 }{c.ThroughputOverheadPct - c.CILow, c.CIHigh - c.ThroughputOverheadPct})
				maxRate = math.Max(maxRate, float64(c.SampleRate))
			}
			if err := addErrLine(p, m, i, pts); err != nil {
				return figs, err
			}
		}
		if c, found := aa[k.workload]; found {
			pts := errPoints{XYs: plotter.XYs{{X: -0.5, Y: c.ThroughputOverheadPct}},
				YErrors: plotter.YErrors{{Low: c.ThroughputOverheadPct - c.CILow, High: c.CIHigh - c.ThroughputOverheadPct}}}
			if err := addErrLine(p, "no observer (A/A)", -1, pts); err != nil {
				return figs, err
			}
		}
		var ticks []plot.Tick
		ticks = append(ticks, plot.Tick{Value: -0.5, Label: "off"})
		for r := 1.0; r <= maxRate; r *= 10 {
			ticks = append(ticks, plot.Tick{Value: math.Log10(r), Label: fmt.Sprint(r)})
		}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		p.X.Min, p.X.Max = -0.8, math.Log10(maxRate)+0.3
		zeroLine(p)
		headroom(p)
		name := fmt.Sprintf("overhead_%s_%s.png", safe(k.workload), safe(k.transport))
		if err := save(p, dir, name, 7*vg.Inch); err != nil {
			return figs, err
		}
		figs = append(figs, Figure{name, fmt.Sprintf("Throughput overhead vs sample rate, %s over %s (error bars: 95%% bootstrap CI)", k.workload, k.transport)})
	}
	return figs, nil
}

// headroom extends the y axis upwards so the legend does not hide data.
func headroom(p *plot.Plot) {
	p.Y.Max += 0.35 * (p.Y.Max - p.Y.Min)
}

func addErrLine(p *plot.Plot, name string, i int, pts errPoints) error {
	l, s, err := plotter.NewLinePoints(pts.XYs)
	if err != nil {
		return err
	}
	l.Color, s.Color = colorOf(i), colorOf(i)
	s.Shape = shapeOf(i)
	eb, err := plotter.NewYErrorBars(pts)
	if err != nil {
		return err
	}
	eb.Color = colorOf(i)
	eb.CapWidth = vg.Points(6)
	p.Add(l, s, eb)
	p.Legend.Add(name, l, s)
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func safe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == '=' {
			return '_'
		}
		return r
	}, s)
}

// colorOf is the palette; -1 is the reference series (black).
func colorOf(i int) color.Color {
	if i < 0 {
		return color.Black
	}
	return plotutil.Color(i)
}
func shapeOf(i int) draw.GlyphDrawer {
	if i < 0 {
		return draw.BoxGlyph{}
	}
	return plotutil.Shape(i)
}
