package plot

import (
	"sort"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
)

// Kernels draws each cell's throughput overhead (95% CI) side by side for
// results measured on several kernels; only cells every kernel has are shown.
func Kernels(files []*results.File, dir string) ([]Figure, error) {
	if len(files) < 2 {
		return nil, nil
	}
	count := map[string]int{}
	label := map[string]string{}
	for _, f := range files {
		for _, c := range ok(f) {
			count[c.Key]++
			label[c.Key] = c.Label()
		}
	}
	var keys []string
	for k, n := range count {
		if n == len(files) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	sort.Strings(keys)
	p := newPlot("Throughput overhead by kernel", "", "throughput overhead % (95% CI)")
	for i, f := range files {
		pts := errPoints{}
		for j, k := range keys {
			c := f.Find(k)
			x := float64(j) + (float64(i)-float64(len(files)-1)/2)*0.12
			pts.XYs = append(pts.XYs, plotter.XY{X: x, Y: c.ThroughputOverheadPct})
			pts.YErrors = append(pts.YErrors, struct{ Low, High float64 }{c.ThroughputOverheadPct - c.CILow, c.CIHigh - c.ThroughputOverheadPct})
		}
		s, err := plotter.NewScatter(pts.XYs)
		if err != nil {
			return nil, err
		}
		eb, err := plotter.NewYErrorBars(pts)
		if err != nil {
			return nil, err
		}
		s.Color, eb.Color, eb.CapWidth = colorOf(i), colorOf(i), vg.Points(5)
		s.Shape = shapeOf(i)
		p.Add(s, eb)
		p.Legend.Add(f.Meta.Kernel, s)
	}
	var names []string
	for _, k := range keys {
		names = append(names, label[k])
	}
	nominalX(p, names)
	zeroLine(p)
	const name = "kernels.png"
	if err := save(p, dir, name, figWidth(len(keys))); err != nil {
		return nil, err
	}
	return []Figure{{name, "Throughput overhead of the same cells on each kernel (95% bootstrap CI); only ratios within one kernel compare, absolute speeds under TCG do not"}}, nil
}
