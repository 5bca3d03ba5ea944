package loadgen

import (
	"math"
	"math/bits"
)

// Histogram is a log-linear (HDR-style) latency histogram of nanosecond values.
//
// Values below 2*subBuckets are counted exactly; above that every power of two
// is split into subBuckets equal-width buckets, so a bucket is never wider than
// 1/subBuckets of its lower bound. Quantiles are reported as the bucket's
// midpoint, which bounds the relative error by 1/(2*subBuckets) = 0.39%.
// Values at or above 2^maxBits ns (about 18 minutes) land in the top bucket;
// Max stays exact.
//
// Memory is fixed (a 35 KiB array), Record never allocates, and each worker
// owns one Histogram: they are merged after the run, so no locks are needed.
type Histogram struct {
	counts [numBuckets]uint64
	total  uint64
	sum    uint64
	min    uint64
	max    uint64
}

const (
	subBits    = 7
	subBuckets = 1 << subBits // 128 buckets per power of two
	maxBits    = 40           // values up to 2^40 ns resolved
	// Highest index: shift = maxBits-(subBits+1), mantissa < 2*subBuckets.
	numBuckets = (maxBits-subBits)*subBuckets + subBuckets
)

// bucketIndex maps v to its bucket. For v < 2*subBuckets the index is v itself;
// above, shift = bitlen(v)-(subBits+1) and index = shift*subBuckets + (v>>shift),
// which continues the exact range without a gap.
func bucketIndex(v uint64) int {
	if v >= 1<<maxBits {
		v = 1<<maxBits - 1
	}
	if v < 2*subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - (subBits + 1)
	return shift*subBuckets + int(v>>uint(shift))
}

// bucketBounds returns the smallest and largest value that map to index i.
func bucketBounds(i int) (lo, hi uint64) {
	if i < 2*subBuckets {
		return uint64(i), uint64(i)
	}
	shift := i/subBuckets - 1
	mantissa := uint64(i - shift*subBuckets)
	lo = mantissa << uint(shift)
	return lo, lo + (1 << uint(shift)) - 1
}

// Record adds one value in nanoseconds; negative values count as 0.
func (h *Histogram) Record(ns int64) {
	if ns < 0 {
		ns = 0
	}
	v := uint64(ns)
	h.counts[bucketIndex(v)]++
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.total++
	h.sum += v
}

// Merge adds every value recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.total += o.total
	h.sum += o.sum
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total }

// Max is the largest recorded value, exactly.
func (h *Histogram) Max() uint64 { return h.max }

// Mean is the exact arithmetic mean of the recorded values.
func (h *Histogram) Mean() float64 {
	if h.total == 0 {
		return 0
	}
	return float64(h.sum) / float64(h.total)
}

// Quantile returns the value at quantile q (0 < q <= 1): the midpoint of the
// bucket holding the ceil(q*count)-th smallest value, clamped to [min, max].
func (h *Histogram) Quantile(q float64) uint64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketBounds(i)
			v := lo + (hi-lo)/2
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}
