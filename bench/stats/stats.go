// Package stats holds the statistics bench reports: robust summaries
// (median, IQR, MAD), seeded bootstrap confidence intervals for medians and
// their differences, and the Mann-Whitney U rank test. Medians and rank
// tests because run times on a shared machine have long right tails that
// wreck means and t-tests; bootstrap because it needs no distribution.
package stats

import (
	"math"
	"math/rand/v2"
	"sort"

	mstats "github.com/montanaflynn/stats"
)

// Level is the confidence level of every interval bench reports.
const Level = 0.95

// Resamples is the bootstrap sample count: enough that the 2.5% and 97.5%
// quantiles move by less than the measurement noise between seeds.
const Resamples = 2000

// Seed makes every interval reproducible from the raw samples alone.
const Seed = 20261126

// Summary is a robust description of one sample.
type Summary struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	IQR    float64 `json:"iqr"`
	MAD    float64 `json:"mad"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Summarize returns median, interquartile range and median absolute deviation.
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := Summary{N: len(xs)}
	s.Median, _ = mstats.Median(xs)
	s.MAD, _ = mstats.MedianAbsoluteDeviation(xs)
	s.Min, _ = mstats.Min(xs)
	s.Max, _ = mstats.Max(xs)
	if len(xs) >= 4 { // the library needs four points for quartiles
		s.IQR, _ = mstats.InterQuartileRange(xs)
	} else {
		s.IQR = s.Max - s.Min
	}
	return s
}

// Median of xs (NaN when empty).
func Median(xs []float64) float64 {
	m, err := mstats.Median(xs)
	if err != nil {
		return math.NaN()
	}
	return m
}

// MinSignificant is the smallest sample bench will call significant. Below
// six values no distribution-free interval for a median reaches 95% (all of
// five pairs agreeing in sign happens by chance with p = 2/2^5 = 0.0625),
// and the percentile bootstrap is then far too narrow.
const MinSignificant = 6

// Estimate is a median with its bootstrap confidence interval.
type Estimate struct {
	Median      float64 `json:"median"`
	Low         float64 `json:"ci_low"`
	High        float64 `json:"ci_high"`
	Significant bool    `json:"significant"` // the interval excludes zero
	N           int     `json:"n"`
}

// Marker is "" for a significant estimate and "~" otherwise, as in benchstat.
func (e Estimate) Marker() string {
	if e.Significant {
		return ""
	}
	return "~"
}

// BootstrapMedians resamples xs with replacement and returns the sorted medians.
func BootstrapMedians(xs []float64, resamples int, seed uint64) []float64 {
	if len(xs) == 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]float64, len(xs))
	out := make([]float64, resamples)
	for i := range out {
		for j := range buf {
			buf[j] = xs[rng.IntN(len(xs))]
		}
		out[i] = sortedMedian(buf)
	}
	sort.Float64s(out)
	return out
}

// sortedMedian sorts buf in place and returns its median: the bootstrap's
// inner loop, where the library's copying Median would dominate.
func sortedMedian(buf []float64) float64 {
	sort.Float64s(buf)
	n := len(buf)
	if n%2 == 1 {
		return buf[n/2]
	}
	return (buf[n/2-1] + buf[n/2]) / 2
}

// quantile of sorted xs by linear interpolation.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return sorted[lo] + (sorted[hi]-sorted[lo])*(pos-float64(lo))
}

// EstimateMedian is the median of xs with a percentile-bootstrap interval.
func EstimateMedian(xs []float64, seed uint64) Estimate {
	return EstimateMedianN(xs, Resamples, seed)
}

// EstimateMedianN is EstimateMedian with a chosen number of resamples: a
// power simulation that repeats it hundreds of times takes fewer.
func EstimateMedianN(xs []float64, resamples int, seed uint64) Estimate {
	if len(xs) == 0 {
		return Estimate{} // N = 0: no data (NaN would not survive JSON)
	}
	boot := BootstrapMedians(xs, resamples, seed)
	e := Estimate{Median: Median(xs), N: len(xs)}
	e.Low = quantile(boot, (1-Level)/2)
	e.High = quantile(boot, 1-(1-Level)/2)
	e.Significant = (e.Low > 0 || e.High < 0) && len(xs) >= MinSignificant
	return e
}

// EstimateDiff is median(b) − median(a) for two independent samples with a
// bootstrap interval (each sample resampled on its own).
func EstimateDiff(a, b []float64, seed uint64) Estimate {
	if len(a) == 0 || len(b) == 0 {
		return Estimate{}
	}
	ba := BootstrapMedians(a, Resamples, seed)
	bb := BootstrapMedians(b, Resamples, seed+1)
	// BootstrapMedians sorts; shuffle the pairing back with a fixed permutation
	rng := rand.New(rand.NewPCG(seed+2, seed))
	rng.Shuffle(len(bb), func(i, j int) { bb[i], bb[j] = bb[j], bb[i] })
	d := make([]float64, len(ba))
	for i := range d {
		d[i] = bb[i] - ba[i]
	}
	sort.Float64s(d)
	e := Estimate{Median: Median(b) - Median(a), N: len(a) + len(b)}
	e.Low = quantile(d, (1-Level)/2)
	e.High = quantile(d, 1-(1-Level)/2)
	e.Significant = (e.Low > 0 || e.High < 0) && min(len(a), len(b)) >= MinSignificant
	return e
}

// FractionAtMost is the share of bootstrap medians of xs that are <= limit:
// how confident one can be that the true median is within the limit.
func FractionAtMost(xs []float64, limit float64, seed uint64) float64 {
	boot := BootstrapMedians(xs, Resamples, seed)
	if len(boot) == 0 {
		return 0
	}
	n := sort.Search(len(boot), func(i int) bool { return boot[i] > limit })
	return float64(n) / float64(len(boot))
}
