package results

import (
	"math"
	"sort"
	"strconv"
)

// summarizeFlushes sums the observed runs' flushes: CPU per flush and the
// wall-time quantiles of the observer's own histogram.
func (c *Cell) summarizeFlushes() {
	c.Flushes, c.FlushCPUNs, c.FlushP50Ns, c.FlushP99Ns = 0, 0, 0, 0
	c.HeldSockets = 2 * c.WorkloadSpec.Hold
	var cpu float64
	buckets := map[string]float64{}
	for _, s := range c.Observed {
		p := s.Probe
		if p == nil {
			continue
		}
		c.Flushes += p.Flushes
		cpu += p.FlushCPUNs
		for le, n := range p.FlushBuckets {
			buckets[le] += n
		}
	}
	if c.Flushes == 0 {
		return
	}
	c.FlushCPUNs = cpu / c.Flushes
	c.FlushP50Ns = 1e9 * BucketQuantile(0.5, buckets)
	c.FlushP99Ns = 1e9 * BucketQuantile(0.99, buckets)
}

// BucketQuantile estimates quantile q from cumulative histogram buckets
// keyed by upper bound ("+Inf" last), interpolating linearly inside the
// bucket as Prometheus's histogram_quantile does; a quantile in the +Inf
// bucket is the largest finite bound. NaN when there are no observations.
func BucketQuantile(q float64, cumulative map[string]float64) float64 {
	type bucket struct{ le, n float64 }
	var bs []bucket
	for k, n := range cumulative {
		le, err := strconv.ParseFloat(k, 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, n})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return math.NaN()
	}
	rank := q * bs[len(bs)-1].n
	lo, below := 0.0, 0.0
	for i, b := range bs {
		if b.n >= rank {
			if math.IsInf(b.le, 1) {
				if i == 0 {
					return math.NaN()
				}
				return bs[i-1].le
			}
			if b.n == below {
				return b.le
			}
			return lo + (b.le-lo)*(rank-below)/(b.n-below)
		}
		lo, below = b.le, b.n
	}
	return bs[len(bs)-1].le
}
