package plot

import (
	"fmt"
	"math"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
)

func observed(f *results.File) []results.Cell {
	var out []results.Cell
	for _, c := range ok(f) {
		if c.SampleRate != matrix.Off {
			out = append(out, c)
		}
	}
	return out
}

func labels(cells []results.Cell) []string {
	out := make([]string, len(cells))
	for i, c := range cells {
		out[i] = c.Label()
	}
	return out
}

// groupedBars adds one bar series per name, each with a value per x position.
func groupedBars(p *plot.Plot, names []string, values [][]float64) error {
	width := vg.Points(60 / float64(max(len(names), 1)))
	top := 0.0
	for _, vs := range values {
		for _, v := range vs {
			top = max(top, v)
		}
	}
	defer func() { p.Y.Min, p.Y.Max = 0, top*1.3+1 }() // headroom for the legend
	for i, name := range names {
		b, err := plotter.NewBarChart(plotter.Values(values[i]), width)
		if err != nil {
			return err
		}
		b.Color = plotutil.Color(i)
		b.LineStyle.Width = 0
		b.Offset = vg.Length(float64(i)-float64(len(names)-1)/2) * width
		p.Add(b)
		p.Legend.Add(name, b)
	}
	return nil
}

func figWidth(n int) vg.Length { return vg.Length(max(7, 1+n)) * vg.Inch }

// BPFCost draws mean BPF run time per program run, per configuration.
func BPFCost(f *results.File, dir string) ([]Figure, error) {
	var cells []results.Cell
	progSet := map[string]bool{}
	for _, c := range observed(f) {
		if len(c.BPFNsPerRun) > 0 {
			cells = append(cells, c)
			for p := range c.BPFNsPerRun {
				progSet[p] = true
			}
		}
	}
	if len(cells) == 0 {
		return nil, nil
	}
	progs := sortedKeys(progSet)
	values := make([][]float64, len(progs))
	for i, prog := range progs {
		for _, c := range cells {
			values[i] = append(values[i], c.BPFNsPerRun[prog])
		}
	}
	p := newPlot("BPF run time per program run (kernel statistics)", "", "ns per run")
	if err := groupedBars(p, progs, values); err != nil {
		return nil, err
	}
	nominalX(p, labels(cells))
	const name = "bpf_ns_per_run.png"
	if err := save(p, dir, name, figWidth(len(cells))); err != nil {
		return nil, err
	}
	return []Figure{{name, "Mean BPF run time per program invocation, by configuration (only bpf_stats=on cells are timed)"}}, nil
}

// AgentCPU draws the observer's cost per loadgen operation: user-space
// agent CPU next to the kernel-side BPF time.
func AgentCPU(f *results.File, dir string) ([]Figure, error) {
	cells := observed(f)
	if len(cells) == 0 {
		return nil, nil
	}
	values := [][]float64{{}, {}}
	for _, c := range cells {
		values[0] = append(values[0], c.AgentCPUPerOpNs)
		values[1] = append(values[1], c.BPFNsPerOp())
	}
	p := newPlot("Observer cost per operation", "", "ns per loadgen operation (BPF: bpf_stats=on cells only)")
	if err := groupedBars(p, []string{"agent CPU (utime+stime)", "BPF programs (run time)"}, values); err != nil {
		return nil, err
	}
	nominalX(p, labels(cells))
	const name = "agent_cpu.png"
	if err := save(p, dir, name, figWidth(len(cells))); err != nil {
		return nil, err
	}
	return []Figure{{name, "User-space agent CPU and kernel BPF time per loadgen operation"}}, nil
}

// Latency draws the latency percentiles of each workload: the median over
// all its baseline runs, and each observed configuration.
func Latency(f *results.File, dir string) ([]Figure, error) {
	byWorkload := map[string][]results.Cell{}
	for _, c := range ok(f) {
		byWorkload[c.Workload] = append(byWorkload[c.Workload], c)
	}
	pct := []string{"p50", "p90", "p99", "p99.9"}
	get := func(l results.Latency) []float64 { return []float64{l.P50, l.P90, l.P99, l.P999} }
	var figs []Figure
	for _, w := range sortedKeys(byWorkload) {
		cells := byWorkload[w]
		sort.Slice(cells, func(i, j int) bool { return cells[i].Key < cells[j].Key })
		p := newPlot("Latency percentiles: "+w, "percentile", "latency µs (median over runs, log scale)")
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = ticks125{}
		p.Legend.Left = true // the tail rises to the right
		var base []results.Sample
		for _, c := range cells {
			base = append(base, c.Baseline...)
		}
		series := []struct {
			name    string
			samples []results.Sample
		}{{"baseline (no observer)", base}}
		for _, c := range cells {
			if c.SampleRate != matrix.Off {
				series = append(series, struct {
					name    string
					samples []results.Sample
				}{c.Label(), c.Observed})
			}
		}
		for i, s := range series {
			xys := make(plotter.XYs, len(pct))
			for j := range pct {
				var vals []float64
				for _, smp := range s.samples {
					vals = append(vals, get(smp.Loadgen.LatencyNs)[j]/1000)
				}
				xys[j] = plotter.XY{X: float64(j), Y: max(median(vals), 0.001)} // log scale: no zeros
			}
			l, pts, err := plotter.NewLinePoints(xys)
			if err != nil {
				return figs, err
			}
			l.Color, pts.Color, pts.Shape = plotutil.Color(i), plotutil.Color(i), plotutil.Shape(i)
			p.Add(l, pts)
			p.Legend.Add(s.name, l, pts)
		}
		nominalX(p, pct)
		p.X.Tick.Label.Rotation = 0
		name := fmt.Sprintf("latency_%s.png", safe(w))
		if err := save(p, dir, name, 7*vg.Inch); err != nil {
			return figs, err
		}
		figs = append(figs, Figure{name, "Latency percentiles of " + w + ": baseline runs pooled, each observed configuration"})
	}
	return figs, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ticks125 labels 1, 2 and 5 times each power of ten: a log axis over one
// or two decades would otherwise carry a single label.
type ticks125 struct{}

// Ticks implements plot.Ticker.
func (ticks125) Ticks(lo, hi float64) []plot.Tick {
	var out []plot.Tick
	for dec := math.Pow(10, math.Floor(math.Log10(lo))); dec <= hi; dec *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if v := m * dec; v >= lo && v <= hi {
				out = append(out, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
			}
		}
	}
	return out
}
