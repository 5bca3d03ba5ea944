package soak

import (
	"fmt"
	"image/color"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Figure is one written PNG.
type Figure struct {
	File    string // base name inside the output directory
	Caption string
}

// Plot writes soak-KEY.png per tracked series: the samples against
// minutes, the block medians that were fitted, and the fitted line.
func Plot(f *File, dir string) ([]Figure, error) {
	var figs []Figure
	for i, s := range series {
		if len(f.Samples) == 0 {
			break
		}
		name := "soak-" + s.key + ".png"
		if err := plotSeries(f, i, filepath.Join(dir, name)); err != nil {
			return figs, fmt.Errorf("soak: plot %s: %v", name, err)
		}
		figs = append(figs, Figure{name, fmt.Sprintf("%s against time; dots: block medians; dashed: fitted trend (%s)", s.name, f.Growth[i].Verdict)})
	}
	return figs, nil
}

func plotSeries(f *File, i int, path string) error {
	s, g := series[i], f.Growth[i]
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Observer %s during a %s soak, Linux %s\n(%d conn/s churn, %d connections held; %s)",
		s.name, f.Meta.Ran, f.Meta.Kernel, f.Meta.Rate, f.Meta.Hold, g.Verdict)
	p.X.Label.Text = "minutes since the churn began"
	p.Y.Label.Text = s.unit
	p.Y.Tick.Marker = plainTicks{}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	pts := make(plotter.XYs, len(f.Samples))
	for j, smp := range f.Samples {
		pts[j] = plotter.XY{X: smp.T / 60, Y: s.get(smp) / s.scale}
	}
	l, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	l.Color = plotutil.Color(0)
	p.Add(l)
	p.Legend.Add(fmt.Sprintf("sample every %s", f.Meta.Sample), l)
	if len(g.BlockHours) > 0 {
		if err := addFit(p, g.Trend, s.unit); err != nil {
			return err
		}
	}
	p.X.Min, p.Y.Min = 0, 0 // growth reads against zero, not against the noise band
	p.Y.Max *= 1.25
	return p.Save(8*vg.Inch, 4*vg.Inch, path)
}

// addFit draws the block medians and the fitted line over them.
func addFit(p *plot.Plot, t Trend, unit string) error {
	meds := make(plotter.XYs, len(t.BlockHours))
	for j, h := range t.BlockHours {
		meds[j] = plotter.XY{X: h * 60, Y: t.BlockMedians[j]}
	}
	sc, err := plotter.NewScatter(meds)
	if err != nil {
		return err
	}
	sc.Color, sc.Shape = plotutil.Color(1), draw.CircleGlyph{}
	first, last := t.BlockHours[0], t.BlockHours[len(t.BlockHours)-1]
	fit, err := plotter.NewLine(plotter.XYs{{X: first * 60, Y: t.At(first)}, {X: last * 60, Y: t.At(last)}})
	if err != nil {
		return err
	}
	fit.Color = color.Black
	fit.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(sc, fit)
	p.Legend.Add("block medians (after warm-up)", sc)
	p.Legend.Add(fmt.Sprintf("fit: %+.3g %s/h, 95%% CI [%.3g, %.3g]", t.SlopePerHour, unit, t.Low, t.High), fit)
	return nil
}

// plainTicks are the default ticks labelled 4000, not 4000.00: counts read as counts.
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'g', -1, 64)
		}
	}
	return ts
}
