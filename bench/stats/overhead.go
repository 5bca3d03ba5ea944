package stats

// ThroughputOverheadPct turns paired throughput samples into per-pair
// overheads in percent, 100·(1 − observed/baseline): positive = the observer
// cost throughput. Pairs are run next to each other, so their ratio cancels
// the drift that independent medians would carry.
func ThroughputOverheadPct(baseline, observed []float64) []float64 {
	return pairwise(baseline, observed, func(b, o float64) float64 { return 100 * (1 - o/b) })
}

// LatencyOverheadPct is 100·(observed/baseline − 1) per pair: positive = slower.
func LatencyOverheadPct(baseline, observed []float64) []float64 {
	return pairwise(baseline, observed, func(b, o float64) float64 { return 100 * (o/b - 1) })
}

func pairwise(a, b []float64, f func(a, b float64) float64) []float64 {
	n := min(len(a), len(b))
	out := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		if a[i] > 0 {
			out = append(out, f(a[i], b[i]))
		}
	}
	return out
}
