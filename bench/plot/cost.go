package plot

import (
	"fmt"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/stats"
)

// CostPerOp draws, per workload, each cell's cost per operation two ways
// side by side, in µs with 95% intervals: accounted (BPF + observer CPU +
// dispatch) and end to end (CPU per operation added, load and observer).
// The two differ in precision by an order of magnitude here, and the plot
// shows it rather than the bare estimates.
func CostPerOp(f *results.File, dir string) ([]Figure, error) {
	byWorkload := map[string][]results.Cell{}
	for _, c := range ok(f) {
		if c.SampleRate.Observed() && c.Accounted.N > 0 {
			byWorkload[c.Workload] = append(byWorkload[c.Workload], c)
		}
	}
	var figs []Figure
	for _, w := range sortedKeys(byWorkload) {
		cells := byWorkload[w]
		p := newPlot(fmt.Sprintf("Cost per %s operation, Linux %s", w, f.Meta.Kernel),
			"cell", "µs of CPU per operation (median, 95% CI)")
		var labels []string
		acc, e2e := errPoints{}, errPoints{}
		for i, c := range cells {
			labels = append(labels, shortLabel(c))
			addPoint(&acc, float64(i)-0.08, c.Accounted)
			addPoint(&e2e, float64(i)+0.08, stats.Estimate{Median: c.CPUPerOpNs, Low: c.CPUPerOpCILow, High: c.CPUPerOpCIHigh})
		}
		for i, s := range []struct {
			name string
			pts  errPoints
		}{{"accounted: BPF + observer CPU + dispatch", acc}, {"end to end: CPU added per operation", e2e}} {
			sc, err := plotter.NewScatter(s.pts.XYs)
			if err != nil {
				return figs, err
			}
			sc.Color, sc.Shape = colorOf(i), shapeOf(i)
			eb, err := plotter.NewYErrorBars(s.pts)
			if err != nil {
				return figs, err
			}
			eb.Color, eb.CapWidth = colorOf(i), vg.Points(6)
			p.Add(sc, eb)
			p.Legend.Add(s.name, sc)
		}
		nominalX(p, labels)
		zeroLine(p)
		headroom(p)
		p.Legend.Top, p.Legend.Left = true, true
		name := fmt.Sprintf("cost_per_op_%s.png", safe(w))
		if err := save(p, dir, name, 8*vg.Inch); err != nil {
			return figs, err
		}
		figs = append(figs, Figure{name, fmt.Sprintf("Cost per %s operation: accounted and end to end, µs with 95%% CIs", w)})
	}
	return figs, nil
}

func addPoint(pts *errPoints, x float64, e stats.Estimate) {
	pts.XYs = append(pts.XYs, plotter.XY{X: x, Y: e.Median / 1000})
	pts.YErrors = append(pts.YErrors, struct{ Low, High float64 }{(e.Median - e.Low) / 1000, (e.High - e.Median) / 1000})
}

// shortLabel names a cell in a plot's axis: its settings without the
// workload, which the title holds.
func shortLabel(c results.Cell) string {
	s := fmt.Sprintf("%s/%s rate %s", c.Transport, c.MapType, c.SampleRate)
	if c.Observer != "" {
		s = c.Observer + " " + s
	}
	if c.Arm != matrix.ArmObserver {
		s += " " + string(c.Arm)
	}
	return s
}
