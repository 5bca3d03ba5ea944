package plot

import (
	"fmt"
	"image/color"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/stats"
)

// FlushTargetNs is the stated target for one flush of 100k open sockets
// on the project's 2-CPU machines: 50 ms of CPU.
const FlushTargetNs = 50e6

// ScaleCurves draws how the cost grows with the work: against the sockets
// held open beside the load (CPU per flush and flush wall time; CPU per
// operation added) and against the connection rate (CPU per operation
// added and accounted). Drawn only when the run has such axes.
func ScaleCurves(f *results.File, dir string) ([]Figure, error) {
	var open, rate []results.Cell
	for _, c := range ok(f) {
		if !c.SampleRate.Observed() {
			continue
		}
		if c.HeldSockets > 0 {
			open = append(open, c)
		}
	}
	if len(open) > 0 {
		// the axis's zero point: the same load with nothing held
		spec := open[0].WorkloadSpec
		for _, c := range ok(f) {
			w := c.WorkloadSpec
			if c.SampleRate.Observed() && c.HeldSockets == 0 && w.Mode == spec.Mode && w.Rate == spec.Rate && w.Size == spec.Size {
				open = append(open, c)
			}
		}
	}
	for _, c := range ok(f) {
		if c.SampleRate.Observed() && c.HeldSockets == 0 && c.WorkloadSpec.Mode == "crr" {
			rate = append(rate, c)
		}
	}
	var figs []Figure
	if len(open) >= 2 {
		got, err := costVsOpen(f, open, dir)
		if err != nil {
			return figs, err
		}
		figs = append(figs, got...)
	}
	if rates := distinctRates(rate); rates >= 3 {
		got, err := costVsRate(f, rate, dir)
		if err != nil {
			return figs, err
		}
		figs = append(figs, got...)
	}
	return figs, nil
}

func costVsOpen(f *results.File, cells []results.Cell, dir string) ([]Figure, error) {
	sort.Slice(cells, func(i, j int) bool { return cells[i].HeldSockets < cells[j].HeldSockets })
	labels := make([]string, len(cells))
	var cpu, wall errPoints
	var perOp errPoints
	for i, c := range cells {
		labels[i] = socketsLabel(c.HeldSockets)
		x := float64(i)
		cpu.XYs = append(cpu.XYs, plotter.XY{X: x - 0.06, Y: c.FlushCPUNs / 1e6})
		cpu.YErrors = append(cpu.YErrors, struct{ Low, High float64 }{0, 0})
		wall.XYs = append(wall.XYs, plotter.XY{X: x + 0.06, Y: c.FlushP50Ns / 1e6})
		wall.YErrors = append(wall.YErrors, struct{ Low, High float64 }{0, max(0, c.FlushP99Ns-c.FlushP50Ns) / 1e6})
		addPoint(&perOp, x, stats.Estimate{Median: c.CPUPerOpNs, Low: c.CPUPerOpCILow, High: c.CPUPerOpCIHigh})
	}
	w := cells[0].WorkloadSpec
	where := fmt.Sprintf("%s %d B at %d/s, Linux %s", w.Mode, w.Size, w.Rate, f.Meta.Kernel)

	p := newPlot("One flush of the connection map vs open sockets, "+where,
		"sockets held open beside the load (observer's map entries)", "ms per flush")
	if err := addErrLine(p, "CPU per flush (mean)", 0, cpu); err != nil {
		return nil, err
	}
	if err := addErrLine(p, "wall time per flush (p50, bar to p99)", 1, wall); err != nil {
		return nil, err
	}
	nominalX(p, labels)
	targetLine(p, FlushTargetNs/1e6, "target at 100k: 50 ms of CPU")
	headroom(p)
	p.Legend.Left = true
	var figs []Figure
	if err := save(p, dir, "flush_vs_open.png", 7*vg.Inch); err != nil {
		return figs, err
	}
	figs = append(figs, Figure{"flush_vs_open.png", "CPU and wall time of one flush against the sockets open beside the load"})

	p = newPlot("CPU per connection the observer adds vs open sockets, "+where,
		"sockets held open beside the load", "µs of CPU per connection added (median, 95% CI)")
	if err := addErrLine(p, "end to end: load + observer CPU, observed − baseline", 0, perOp); err != nil {
		return figs, err
	}
	nominalX(p, labels)
	zeroLine(p)
	headroom(p)
	p.Legend.Left = true
	if err := save(p, dir, "cost_vs_open.png", 7*vg.Inch); err != nil {
		return figs, err
	}
	return append(figs, Figure{"cost_vs_open.png", "CPU per connection added against the sockets open beside the load, 95% CIs (the flushes' cost is spread over the connections of each second)"}), nil
}

func costVsRate(f *results.File, cells []results.Cell, dir string) ([]Figure, error) {
	x := func(c results.Cell) float64 {
		if c.OfferedRate > 0 {
			return c.OfferedRate
		}
		return c.ObservedThroughput.Median // closed loop: what it reached
	}
	sort.Slice(cells, func(i, j int) bool { return x(cells[i]) < x(cells[j]) })
	var e2e, acc errPoints
	for _, c := range cells {
		r := x(c) / 1000
		addPoint(&e2e, r, stats.Estimate{Median: c.CPUPerOpNs, Low: c.CPUPerOpCILow, High: c.CPUPerOpCIHigh})
		if c.Accounted.N > 0 {
			addPoint(&acc, r, c.Accounted)
		}
	}
	p := newPlot(fmt.Sprintf("CPU per connection the observer adds vs connection rate, crr, Linux %s", f.Meta.Kernel),
		"connections per second (thousands; the last point: saturation, closed loop)", "µs of CPU per connection (median, 95% CI)")
	if err := addErrLine(p, "end to end: load + observer CPU, observed − baseline", 0, e2e); err != nil {
		return nil, err
	}
	if len(acc.XYs) > 0 {
		if err := addErrLine(p, "accounted: BPF + observer CPU + dispatch", 1, acc); err != nil {
			return nil, err
		}
	}
	p.X.Min = 0
	zeroLine(p)
	headroom(p)
	p.Legend.Left = true
	if err := save(p, dir, "cost_vs_rate.png", 7*vg.Inch); err != nil {
		return nil, err
	}
	return []Figure{{"cost_vs_rate.png", "CPU per connection added against the connection rate, 95% CIs"}}, nil
}

func distinctRates(cells []results.Cell) int {
	seen := map[float64]bool{}
	for _, c := range cells {
		seen[c.OfferedRate] = true
	}
	return len(seen)
}

// socketsLabel writes 0, 1k, 10k, 100k.
func socketsLabel(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// targetLine draws a horizontal dashed line at y, named in the legend.
func targetLine(p *plot.Plot, y float64, name string) {
	l, err := plotter.NewLine(plotter.XYs{{X: p.X.Min, Y: y}, {X: p.X.Max, Y: y}})
	if err != nil {
		return
	}
	l.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
	l.Color = color.Black
	p.Add(l)
	p.Legend.Add(name, l)
}
