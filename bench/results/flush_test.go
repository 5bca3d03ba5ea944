package results

import (
	"math"
	"testing"
)

func TestBucketQuantile(t *testing.T) {
	// 100 flushes: 50 under 1 ms, 40 in (1, 2] ms, 10 in (2, 4] ms.
	b := map[string]float64{"0.001": 50, "0.002": 90, "0.004": 100, "+Inf": 100}
	for _, c := range []struct{ q, want float64 }{
		{0.5, 0.001},   // exactly the first bucket's count
		{0.7, 0.0015},  // halfway into (1, 2] ms
		{0.99, 0.0038}, // 9 of the last bucket's 10
		{0.25, 0.0005}, // interpolated from 0
	} {
		if got := BucketQuantile(c.q, b); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("q%.2f = %g, want %g", c.q, got, c.want)
		}
	}
	// Past every finite bound: the largest finite bound, not +Inf.
	if got := BucketQuantile(0.99, map[string]float64{"0.001": 1, "+Inf": 10}); got != 0.001 {
		t.Errorf("quantile in +Inf = %g, want 0.001", got)
	}
	if got := BucketQuantile(0.5, map[string]float64{"+Inf": 0}); !math.IsNaN(got) {
		t.Errorf("no observations = %g, want NaN", got)
	}
}
