package soak

import (
	"math"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/stats"
)

const (
	// Blocks is how many consecutive blocks the samples after warm-up are
	// cut into; their medians, not the raw samples, are fitted, so one GC
	// spike or a scrape that lands mid-flush cannot make a trend.
	Blocks = 10
	// WarmupFraction of the samples is dropped: maps, caches and the
	// per-connection series fill up there, which is growth but not a leak.
	WarmupFraction = 0.10
	// MinGrowth is the fitted growth over the run, as a fraction of the
	// mean, below which a significant slope is still called flat: a few
	// KiB an hour is allocator noise, not a leak.
	MinGrowth = 0.02
	// tCrit is Student's t 97.5% quantile with Blocks-2 = 8 degrees of
	// freedom (a line has two parameters): the 95% two-sided interval.
	tCrit = 2.306004135
)

// Trend is a series' fitted drift after warm-up.
type Trend struct {
	FirstMedian  float64 `json:"first_block_median"`
	LastMedian   float64 `json:"last_block_median"`
	Mean         float64 `json:"mean"`           // of the block medians
	SlopePerHour float64 `json:"slope_per_hour"` // least squares over the block medians
	Low          float64 `json:"slope_ci_low"`   // 95% t-interval of the slope, per hour
	High         float64 `json:"slope_ci_high"`
	GrowthPct    float64 `json:"growth_pct"` // fitted growth over the whole run, % of the mean
	Grows        bool    `json:"grows"`
	Verdict      string  `json:"verdict"` // flat, grows, or too few samples
	// the fitted points: each block's mid time (hours since the start) and median
	BlockHours   []float64 `json:"block_mid_hours,omitempty"`
	BlockMedians []float64 `json:"block_medians,omitempty"`
}

// At is the fitted line's value at h hours.
func (t Trend) At(h float64) float64 {
	var mh float64
	for _, b := range t.BlockHours {
		mh += b / float64(len(t.BlockHours))
	}
	return t.Mean + t.SlopePerHour*(h-mh)
}

// Fit drops the first WarmupFraction of the samples (t in seconds since
// the start), cuts the rest into Blocks blocks and fits a line through
// their medians at their mid times. The series grows when the slope's 95%
// interval lies above zero and the fitted growth over the whole run is
// more than MinGrowth of the mean.
func Fit(t, y []float64) Trend {
	if len(t) != len(y) || len(t) == 0 {
		return Trend{Verdict: "too few samples"}
	}
	skip := int(math.Ceil(WarmupFraction * float64(len(t))))
	xs, ms := blockMedians(t[skip:], y[skip:])
	if len(xs) < Blocks {
		return Trend{Verdict: "too few samples"}
	}
	tr := line(xs, ms)
	tr.FirstMedian, tr.LastMedian = ms[0], ms[len(ms)-1]
	tr.BlockHours, tr.BlockMedians = xs, ms
	runHours := (t[len(t)-1] - t[0]) / 3600
	if tr.Mean != 0 {
		tr.GrowthPct = 100 * tr.SlopePerHour * runHours / math.Abs(tr.Mean)
	}
	tr.Grows = tr.Low > 0 && tr.GrowthPct > 100*MinGrowth
	tr.Verdict = "flat"
	if tr.Grows {
		tr.Verdict = "grows"
	}
	return tr
}

// blockMedians returns each block's mid time in hours and its median.
func blockMedians(t, y []float64) (mids, medians []float64) {
	n := len(t)
	if n < Blocks {
		return nil, nil
	}
	for b := range Blocks {
		lo, hi := b*n/Blocks, (b+1)*n/Blocks
		mids = append(mids, (t[lo]+t[hi-1])/2/3600)
		medians = append(medians, stats.Median(y[lo:hi]))
	}
	return mids, medians
}

// line fits y = a + b·x by least squares and gives b's 95% t-interval.
func line(x, y []float64) Trend {
	n := float64(len(x))
	var mx, my float64
	for i := range x {
		mx += x[i] / n
		my += y[i] / n
	}
	var sxx, sxy float64
	for i := range x {
		sxx += (x[i] - mx) * (x[i] - mx)
		sxy += (x[i] - mx) * (y[i] - my)
	}
	if sxx == 0 { // every sample at one instant: no time to grow in
		return Trend{Mean: my}
	}
	b := sxy / sxx
	var sse float64
	for i := range x {
		r := y[i] - (my + b*(x[i]-mx))
		sse += r * r
	}
	se := math.Sqrt(sse/(n-2)) / math.Sqrt(sxx)
	return Trend{Mean: my, SlopePerHour: b, Low: b - tCrit*se, High: b + tCrit*se}
}
