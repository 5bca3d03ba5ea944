package matrix

import (
	"fmt"
	"image/color"
	"os"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/ebpf-net-obs/ebpf-net-obs/vmtest/features"
)

// writeComparisonPNG draws, one panel under the other: available features by
// category per kernel, and where bench results exist the mean throughput
// overhead per transport and the mean BPF ns per run per program.
func writeComparisonPNG(path string, ks []kernelData) error {
	var panels []*plot.Plot
	if p := featurePanel(ks); p != nil {
		panels = append(panels, p)
	}
	if p := overheadPanel(ks); p != nil {
		panels = append(panels, p)
	}
	if p := bpfNsPanel(ks); p != nil {
		panels = append(panels, p)
	}
	if len(panels) == 0 {
		p := plot.New()
		p.Title.Text = "no kernel produced features or bench results"
		panels = append(panels, p)
	}
	w, h := 10*vg.Inch, vg.Length(len(panels))*3.5*vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	rows := make([][]*plot.Plot, len(panels))
	for i, p := range panels {
		rows[i] = []*plot.Plot{p}
	}
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 6, PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3}
	canvases := plot.Align(rows, tiles, dc)
	for i, p := range panels {
		p.Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// groupedBars adds one bar series per group over the kernels on the x axis.
func groupedBars(p *plot.Plot, groups []string, values map[string]plotter.Values) error {
	n := float64(len(groups))
	width := vg.Points(100 / n)
	if width > 25 {
		width = 25
	}
	for i, g := range groups {
		bars, err := plotter.NewBarChart(values[g], width)
		if err != nil {
			return err
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(i)
		bars.Offset = vg.Length(float64(i)-(n-1)/2) * width
		p.Add(bars)
		p.Legend.Add(g, bars)
	}
	p.Legend.Top = true
	return nil
}

func labels(ks []kernelData) []string {
	var l []string
	for _, k := range ks {
		l = append(l, k.label())
	}
	return l
}

func featurePanel(ks []kernelData) *plot.Plot {
	var with []kernelData
	for _, k := range ks {
		if k.feat != nil {
			with = append(with, k)
		}
	}
	if len(with) == 0 {
		return nil
	}
	cats := []string{features.CatProgramType, features.CatMapType, features.CatHelper, features.CatTracepoint, features.CatTransport}
	values := map[string]plotter.Values{}
	for _, c := range cats {
		for _, k := range with {
			n := 0
			for _, ch := range k.feat.Checks {
				if ch.Category == c && ch.Available {
					n++
				}
			}
			values[c] = append(values[c], float64(n))
		}
	}
	p := plot.New()
	p.Title.Text = "Available BPF features by kernel (count per category)"
	p.Y.Label.Text = "available"
	if groupedBars(p, cats, values) != nil {
		return nil
	}
	p.NominalX(labels(with)...)
	p.Y.Min = 0
	return p
}

func withBench(ks []kernelData) []kernelData {
	var out []kernelData
	for _, k := range ks {
		if k.bench != nil {
			out = append(out, k)
		}
	}
	return out
}

func overheadPanel(ks []kernelData) *plot.Plot {
	with := withBench(ks)
	if len(with) == 0 {
		return nil
	}
	transports := map[string]bool{}
	for _, k := range with {
		for _, c := range k.bench.Cells {
			// "none" is the bench's A/A reference cell, not an observer.
			if c.Transport != "none" && c.Transport != "" {
				transports[c.Transport] = true
			}
		}
	}
	groups := sortedKeys(transports)
	values := map[string]plotter.Values{}
	for _, g := range groups {
		for _, k := range with {
			sum, n := 0.0, 0
			for _, c := range k.bench.Cells {
				if c.Transport == g {
					sum += c.ThroughputOverheadPct
					n++
				}
			}
			if n > 0 {
				sum /= float64(n)
			}
			values[g] = append(values[g], sum)
		}
	}
	p := plot.New()
	p.Title.Text = "Throughput overhead by kernel (mean over the smoke cells)"
	p.Y.Label.Text = "overhead %"
	if groupedBars(p, groups, values) != nil {
		return nil
	}
	p.NominalX(labels(with)...)
	p.Add(plotter.NewGrid())
	zero := plotter.NewFunction(func(float64) float64 { return 0 })
	zero.Color = color.Gray{Y: 80}
	p.Add(zero)
	return p
}

func bpfNsPanel(ks []kernelData) *plot.Plot {
	with := withBench(ks)
	if len(with) == 0 {
		return nil
	}
	progs := map[string]bool{}
	for _, k := range with {
		for _, c := range k.bench.Cells {
			for prog := range c.BPFNsPerRun {
				progs[prog] = true
			}
		}
	}
	if len(progs) == 0 {
		return nil
	}
	groups := sortedKeys(progs)
	values := map[string]plotter.Values{}
	for _, g := range groups {
		for _, k := range with {
			sum, n := 0.0, 0
			for _, c := range k.bench.Cells {
				if v, ok := c.BPFNsPerRun[g]; ok {
					sum += v
					n++
				}
			}
			if n > 0 {
				sum /= float64(n)
			}
			values[g] = append(values[g], sum)
		}
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("BPF run time per program invocation (mean over cells, %d programs)", len(groups))
	p.Y.Label.Text = "ns per run"
	if groupedBars(p, groups, values) != nil {
		return nil
	}
	p.NominalX(labels(with)...)
	p.Y.Min = 0
	return p
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
