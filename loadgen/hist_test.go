package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The histogram's promise: a quantile is within 1/(2*subBuckets) = 0.39% of the
// exact order statistic (plus rounding of one unit below 256 ns, where it is exact).
const histRelErr = 1.0 / (2 * subBuckets)

func TestHistogramQuantilesMatchSortedSamples(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// Log-normal latencies around 20 µs with a long tail, plus a few stalls.
	const n = 200_000
	samples := make([]int64, n)
	var h Histogram
	for i := range samples {
		v := int64(math.Exp(rng.NormFloat64()*0.8 + math.Log(20_000)))
		if i%1000 == 0 {
			v = 5_000_000 + rng.Int64N(50_000_000)
		}
		samples[i] = v
		h.Record(v)
	}
	slices.Sort(samples)
	for _, q := range []float64{0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
		exact := samples[int(math.Ceil(q*n))-1]
		got := h.Quantile(q)
		rel := math.Abs(float64(got)-float64(exact)) / float64(exact)
		if rel > histRelErr {
			t.Errorf("q%.4f: got %d, exact %d, relative error %.4f%% > %.4f%%", q, got, exact, 100*rel, 100*histRelErr)
		}
	}
	if h.Max() != uint64(samples[n-1]) {
		t.Errorf("max %d, want %d", h.Max(), samples[n-1])
	}
	var sum float64
	for _, v := range samples {
		sum += float64(v)
	}
	if mean := sum / n; math.Abs(h.Mean()-mean) > 1e-6*mean {
		t.Errorf("mean %f, want %f", h.Mean(), mean)
	}
}

func TestHistogramExactBelow256(t *testing.T) {
	var h Histogram
	for v := int64(1); v <= 100; v++ {
		h.Record(v)
	}
	for _, c := range []struct {
		q    float64
		want uint64
	}{{0.5, 50}, {0.9, 90}, {0.99, 99}, {1, 100}, {0.001, 1}} {
		if got := h.Quantile(c.q); got != c.want {
			t.Errorf("q%v = %d, want %d", c.q, got, c.want)
		}
	}
}

func TestHistogramBucketsTileTheRange(t *testing.T) {
	// Every bucket's bounds map back to it and the next bucket starts right after.
	for i := 0; i < numBuckets-1; i++ {
		lo, hi := bucketBounds(i)
		if bucketIndex(lo) != i || bucketIndex(hi) != i {
			t.Fatalf("bucket %d [%d,%d] maps to %d,%d", i, lo, hi, bucketIndex(lo), bucketIndex(hi))
		}
		if next, _ := bucketBounds(i + 1); next != hi+1 {
			t.Fatalf("gap after bucket %d: hi %d, next lo %d", i, hi, next)
		}
		if i >= 2*subBuckets && float64(hi-lo+1)/float64(lo) > 1.0/subBuckets {
			t.Fatalf("bucket %d too wide: [%d,%d]", i, lo, hi)
		}
	}
	if got := bucketIndex(math.MaxUint64); got != numBuckets-1 {
		t.Fatalf("huge value in bucket %d, want the top one %d", got, numBuckets-1)
	}
}

func TestHistogramMergeEqualsOneHistogram(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var all, a, b Histogram
	for i := 0; i < 10_000; i++ {
		v := rng.Int64N(10_000_000)
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	a.Merge(&b)
	if a != all {
		t.Fatal("merged histogram differs from the one that saw every value")
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	var h Histogram
	if n := testing.AllocsPerRun(1000, func() { h.Record(12345) }); n != 0 {
		t.Fatalf("Record allocates %v times", n)
	}
}
