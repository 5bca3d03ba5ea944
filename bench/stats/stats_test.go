package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestSummarize(t *testing.T) {
	s := Summarize([]float64{1, 2, 3, 4, 5, 6, 7, 8, 100})
	if s.Median != 5 || s.Min != 1 || s.Max != 100 || s.N != 9 {
		t.Errorf("summary %+v", s)
	}
	if s.MAD != 2 { // |x-5| = 4 3 2 1 0 1 2 3 95 -> median 2
		t.Errorf("MAD = %v, want 2", s.MAD)
	}
	if s.IQR <= 0 || s.IQR > 10 {
		t.Errorf("IQR = %v: the outlier must not dominate", s.IQR)
	}
	if got := Summarize([]float64{3, 1}); got.IQR != 2 {
		t.Errorf("small-sample IQR fallback = %v", got.IQR)
	}
}

// With a true throughput ratio of 0.95 and 5% noise, the interval of the
// paired overheads must cover the true 5% in about 95% of experiments and
// flag it significant, while a null effect is mostly flagged "~".
func TestBootstrapCoversTrueOverhead(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	covered, significant, nullSig := 0, 0, 0
	const trials = 100
	for trial := 0; trial < trials; trial++ {
		base := make([]float64, 15)
		obs := make([]float64, 15)
		null := make([]float64, 15)
		for i := range base {
			drift := 10000 * (1 + 0.1*rng.Float64())
			base[i] = drift * (1 + 0.02*rng.NormFloat64())
			obs[i] = 0.95 * drift * (1 + 0.02*rng.NormFloat64())
			null[i] = drift * (1 + 0.02*rng.NormFloat64())
		}
		e := EstimateMedian(ThroughputOverheadPct(base, obs), uint64(trial))
		if e.Low <= 5 && 5 <= e.High {
			covered++
		}
		if e.Significant {
			significant++
		}
		if EstimateMedian(ThroughputOverheadPct(base, null), uint64(trial)).Significant {
			nullSig++
		}
	}
	if covered < trials*88/100 {
		t.Errorf("CI covered the true overhead in %d/%d trials", covered, trials)
	}
	if significant < trials*95/100 {
		t.Errorf("a 5%% effect was significant in only %d/%d trials", significant, trials)
	}
	if nullSig > trials*12/100 {
		t.Errorf("a null effect was significant in %d/%d trials", nullSig, trials)
	}
}

func TestEstimateIsReproducibleAndFlagsZero(t *testing.T) {
	xs := []float64{-1, 0.5, 2, -0.5, 1, 0}
	a, b := EstimateMedian(xs, 7), EstimateMedian(xs, 7)
	if a != b {
		t.Errorf("same seed, different estimates: %+v %+v", a, b)
	}
	if a.Significant || a.Marker() != "~" {
		t.Errorf("interval [%v,%v] spans zero but significant=%v", a.Low, a.High, a.Significant)
	}
	pos := EstimateMedian([]float64{4, 5, 6, 5, 4.5, 5.5}, 7)
	if !pos.Significant || pos.Marker() != "" || pos.Low < 4 || pos.High > 6 {
		t.Errorf("clear effect %+v", pos)
	}
}

func TestTooFewSamplesAreNeverSignificant(t *testing.T) {
	e := EstimateMedian([]float64{10, 11, 12, 10.5, 11.5}, 1)
	if e.Significant || e.Low < 10 {
		t.Errorf("5 samples called significant: %+v", e)
	}
	if d := EstimateDiff([]float64{1, 1.1}, []float64{9, 9.1}, 1); d.Significant {
		t.Errorf("2 vs 2 samples called significant: %+v", d)
	}
}

func TestEstimateDiff(t *testing.T) {
	old := []float64{2, 2.5, 3, 2.2, 2.8, 2.4}
	grew := []float64{8, 8.5, 9, 7.5, 8.2, 8.8}
	d := EstimateDiff(old, grew, 1)
	if !d.Significant || d.Low < 4 || d.High > 7.5 {
		t.Errorf("diff %+v", d)
	}
	same := EstimateDiff(old, []float64{2.1, 2.6, 2.9, 2.3, 2.7, 2.5}, 1)
	if same.Significant {
		t.Errorf("noise flagged significant: %+v", same)
	}
}

func TestFractionAtMost(t *testing.T) {
	xs := []float64{1, 1.2, 0.8, 1.1, 0.9}
	if f := FractionAtMost(xs, 5, 1); f != 1 {
		t.Errorf("all within: %v", f)
	}
	if f := FractionAtMost(xs, 0, 1); f != 0 {
		t.Errorf("none within: %v", f)
	}
}

func TestMannWhitney(t *testing.T) {
	// exact: complete separation of 5 vs 5 gives p = 2/252
	a := []float64{1, 2, 3, 4, 5}
	b := []float64{6, 7, 8, 9, 10}
	if p := MannWhitneyP(a, b); math.Abs(p-2.0/252) > 1e-12 {
		t.Errorf("separated p = %v, want %v", p, 2.0/252)
	}
	if p := MannWhitneyP(a, a); p < 0.9 {
		t.Errorf("identical samples p = %v", p)
	}
	// ties use the normal approximation; it must still be small for a shift
	ta := []float64{1, 1, 2, 2, 3, 3, 4, 4}
	tb := []float64{5, 5, 6, 6, 7, 7, 8, 8}
	if p := MannWhitneyP(ta, tb); p > 0.01 {
		t.Errorf("tied shifted p = %v", p)
	}
	if MannWhitneyP(nil, a) != 1 {
		t.Error("empty sample must give p = 1")
	}
	if e := EstimateMedian(nil, 1); e.N != 0 || e.Significant {
		t.Errorf("empty estimate %+v", e)
	}
}
