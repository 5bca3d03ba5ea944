// Package fidelity measures what a sample rate costs in accuracy: the RTT
// distribution an observer at --sample-rate N reports, compared with the one
// an observer at rate 1 reports over the same connections (both running side
// by side on the same traffic).
//
// The pure part reads the observer's RTT histogram out of a Prometheus text
// exposition and compares two histograms (quantile errors, KS distance);
// Measure runs the observers and the load.
package fidelity

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
)

// RTTMetric is the observer's per-ACK RTT histogram (agent/export/prom,
// rollups): seconds, the kernel's log2 buckets, one series per rollup.
const RTTMetric = "ebpf_net_obs_rtt_seconds"

// Quantiles are the quantiles Compare reports, keyed as in
// results.Fidelity.QuantileErrorPct.
var Quantiles = []struct {
	Name string
	Q    float64
}{{"p50", 0.50}, {"p90", 0.90}, {"p99", 0.99}}

// Histogram is a Prometheus histogram: ascending upper bounds (the last one
// usually +Inf) and the number of samples at or below each.
type Histogram struct {
	Bounds     []float64
	Cumulative []float64
}

// Count is the number of samples.
func (h Histogram) Count() float64 {
	if len(h.Cumulative) == 0 {
		return 0
	}
	return h.Cumulative[len(h.Cumulative)-1]
}

// FromCounts builds a histogram from per-bucket (not cumulative) counts.
func FromCounts(bounds, counts []float64) Histogram {
	h := Histogram{Bounds: append([]float64(nil), bounds...), Cumulative: make([]float64, len(counts))}
	var acc float64
	for i, c := range counts {
		acc += c
		h.Cumulative[i] = acc
	}
	return h
}

// Parse reads a Prometheus text exposition and returns the histogram name
// summed over every series whose labels equal match's values (nil: all
// series). A metric that is absent gives an empty histogram, not an error:
// the observer exports a series only once it has seen a connection.
func Parse(r io.Reader, name string, match map[string]string) (Histogram, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return Histogram{}, fmt.Errorf("parse metrics: %v", err)
	}
	mf, ok := fams[name]
	if !ok {
		return Histogram{}, nil
	}
	if mf.GetType() != dto.MetricType_HISTOGRAM {
		return Histogram{}, fmt.Errorf("metric %s is a %s, not a histogram", name, mf.GetType())
	}
	sum := map[float64]float64{}
	var first []float64
	for _, m := range mf.GetMetric() {
		if !matches(m, match) {
			continue
		}
		hg := m.GetHistogram()
		var bounds []float64
		hasInf := false
		for _, b := range hg.GetBucket() {
			ub := b.GetUpperBound()
			c := b.GetCumulativeCountFloat()
			if c == 0 {
				c = float64(b.GetCumulativeCount())
			}
			sum[ub] += c
			bounds = append(bounds, ub)
			hasInf = hasInf || math.IsInf(ub, 1)
		}
		if !hasInf { // the +Inf bucket is the sample count
			c := hg.GetSampleCountFloat()
			if c == 0 {
				c = float64(hg.GetSampleCount())
			}
			sum[math.Inf(1)] += c
			bounds = append(bounds, math.Inf(1))
		}
		sort.Float64s(bounds)
		if first == nil {
			first = bounds
		} else if !equal(first, bounds) {
			return Histogram{}, fmt.Errorf("metric %s: series have different buckets (%v and %v); cannot sum them", name, first, bounds)
		}
	}
	h := Histogram{Bounds: first, Cumulative: make([]float64, len(first))}
	for i, b := range first {
		h.Cumulative[i] = sum[b]
		if i > 0 && h.Cumulative[i] < h.Cumulative[i-1] {
			return Histogram{}, fmt.Errorf("metric %s: cumulative count falls from %g to %g at le=%s", name, h.Cumulative[i-1], h.Cumulative[i], strconv.FormatFloat(b, 'g', -1, 64))
		}
	}
	return h, nil
}

func matches(m *dto.Metric, match map[string]string) bool {
	for k, v := range match {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k {
				found = lp.GetValue() == v
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Quantile returns the q-quantile (0..1) of h, interpolated inside its
// bucket: log-linearly (geometrically) when the bucket's lower bound is
// above 0, as the kernel's log2 buckets [2^(b-1), 2^b) µs want, linearly in
// the first bucket, which starts at 0. A quantile in the open +Inf bucket is
// the highest finite bound (as Prometheus' histogram_quantile does). It is
// NaN for an empty histogram or q outside [0, 1].
func Quantile(h Histogram, q float64) float64 {
	n := h.Count()
	if n <= 0 || q < 0 || q > 1 || math.IsNaN(q) {
		return math.NaN()
	}
	rank := q * n
	prev := 0.0
	for i, c := range h.Cumulative {
		if c >= rank && c > prev {
			lo := 0.0
			if i > 0 {
				lo = h.Bounds[i-1]
			}
			hi := h.Bounds[i]
			if math.IsInf(hi, 1) {
				return lo
			}
			f := (rank - prev) / (c - prev)
			if lo > 0 {
				return lo * math.Pow(hi/lo, f)
			}
			return lo + f*(hi-lo)
		}
		prev = c
	}
	return h.Bounds[len(h.Bounds)-1]
}

// KS is the Kolmogorov-Smirnov distance between a and b: the largest gap
// between their CDFs, each normalized to its own count, over the bucket
// bounds of either. It is 0 when both are empty and 1 when only one is.
func KS(a, b Histogram) float64 {
	na, nb := a.Count(), b.Count()
	switch {
	case na <= 0 && nb <= 0:
		return 0
	case na <= 0 || nb <= 0:
		return 1
	}
	var d float64
	for _, h := range []Histogram{a, b} {
		for _, x := range h.Bounds {
			d = math.Max(d, math.Abs(cdf(a, x)/na-cdf(b, x)/nb))
		}
	}
	return d
}

// cdf is the number of samples of h at or below the largest bound <= x.
func cdf(h Histogram, x float64) float64 {
	i := sort.Search(len(h.Bounds), func(i int) bool { return h.Bounds[i] > x })
	if i == 0 {
		return 0
	}
	return h.Cumulative[i-1]
}

// Compare measures h against the reference ref (rate 1 on the same
// traffic). QuantileErrorPct holds 100·(q_h − q_ref)/q_ref for p50, p90 and
// p99; a quantile that is undefined (an empty histogram, or a reference
// quantile of 0) is left out rather than stored as NaN, which JSON cannot
// hold. Workload and SampleRate are the caller's to fill in.
func Compare(ref, h Histogram) results.Fidelity {
	f := results.Fidelity{
		Samples:          h.Count(),
		ReferenceSamples: ref.Count(),
		QuantileErrorPct: map[string]float64{},
		KS:               KS(ref, h),
	}
	for _, q := range Quantiles {
		r, v := Quantile(ref, q.Q), Quantile(h, q.Q)
		if math.IsNaN(r) || math.IsNaN(v) || r == 0 {
			continue
		}
		f.QuantileErrorPct[q.Name] = 100 * (v - r) / r
	}
	return f
}
