package compare

import (
	"math/rand/v2"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/stats"
)

// Regresses is the gate's one rule: a change is a regression when its 95%
// interval lies above zero (it is real) and its estimate exceeds the
// threshold (it is large enough to act on).
func Regresses(diff stats.Estimate, threshold float64) bool {
	return diff.N >= stats.MinSignificant && diff.Low > 0 && diff.Median > threshold
}

// Thresholds are the gate's per metric: points for throughput, ns per
// operation for the cost per operation.
type Thresholds struct {
	Pct float64
	Ns  float64
}

// For returns the threshold of metric m.
func (t Thresholds) For(m results.Metric) float64 {
	if m.Unit() == "pct" {
		return t.Pct
	}
	return t.Ns
}

// simulations and resamples of the power simulation: each simulated run is
// a resample of the measured pairs with its own (smaller) bootstrap, the
// gate applied to it as to a real run.
const (
	simulations = 400
	simResample = 400
)

// FlagRate is the share of simulated runs of n pairs, drawn from diffs
// shifted by shift, that the gate flags.
func FlagRate(diffs []float64, shift, threshold float64, n int, seed uint64) float64 {
	if len(diffs) == 0 || n < stats.MinSignificant {
		return 0
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	buf := make([]float64, n)
	flagged := 0
	for i := 0; i < simulations; i++ {
		for j := range buf {
			buf[j] = diffs[rng.IntN(len(diffs))] + shift
		}
		if Regresses(stats.EstimateMedianN(buf, simResample, seed+uint64(i)), threshold) {
			flagged++
		}
	}
	return float64(flagged) / simulations
}

// Detectable is the smallest shift of the A/A differences that the gate
// flags in at least 95% of simulated runs of n pairs (bisection; 0 when the
// A/A pairs are too few).
func Detectable(aa []float64, threshold float64, n int, seed uint64) float64 {
	if len(aa) < stats.MinSignificant {
		return 0
	}
	spread := stats.Summarize(aa)
	lo, hi := 0.0, threshold+10*(spread.IQR+spread.MAD+1e-9)
	for FlagRate(aa, hi, threshold, n, seed) < 0.95 {
		hi *= 2
		if hi > 1e12 {
			return hi
		}
	}
	for k := 0; k < 14; k++ {
		mid := (lo + hi) / 2
		if FlagRate(aa, mid, threshold, n, seed) >= 0.95 {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// Power measures, for each workload of the run that has the cells it
// needs, what the gate can see at the run's pairs: from the observer's A/A
// (an again arm against the observer, or for throughput the no-observer
// A/A cell) the false-alarm rate and the smallest detectable cost, and from
// an inject arm the detection rate of a known cost.
func Power(f *results.File, th Thresholds) []results.Power {
	var out []results.Power
	for _, def := range f.Cells {
		if !def.OK() || def.Arm != matrix.ArmObserver || !def.SampleRate.Observed() {
			continue
		}
		again, inject := twin(f, &def, matrix.ArmAgain), twin(f, &def, matrix.ArmInject)
		if again == nil && inject == nil {
			continue
		}
		var aaCell *results.Cell
		for i := range f.Cells {
			c := &f.Cells[i]
			if c.OK() && c.Workload == def.Workload && !c.SampleRate.Observed() && c.Arm == matrix.ArmObserver {
				aaCell = c
			}
		}
		for _, m := range []results.Metric{results.MetricAccounted, results.MetricCPU, results.MetricThroughput} {
			p := results.Power{Metric: string(m), Unit: m.Unit(), Workload: def.Workload, Cell: def.Key, Pairs: len(def.Observed), Threshold: th.For(m)}
			var aa []float64
			switch {
			case again != nil:
				aa, p.AAFrom = results.PairedDiff(&def, again, m), again.Label()+" − "+def.Label()
			case m == results.MetricThroughput && aaCell != nil:
				aa, p.AAFrom = results.InRoundOrder(aaCell.PerPair(m)), aaCell.Label()
			}
			p.AAPairs = len(aa)
			if len(aa) >= stats.MinSignificant {
				p.FalseAlarmRate = FlagRate(aa, 0, p.Threshold, p.Pairs, def.Seed())
				p.Detectable = Detectable(aa, p.Threshold, p.Pairs, def.Seed())
			} else {
				p.Note = "no A/A pairs for this metric: false-alarm rate and detectable cost not measured"
			}
			if inject != nil {
				d := results.PairedDiff(&def, inject, m)
				if len(d) > 0 {
					p.Injected = stats.Median(d)
					p.DetectionRate = FlagRate(d, 0, p.Threshold, p.Pairs, inject.Seed())
				}
			}
			if len(aa) == 0 && p.Injected == 0 {
				continue
			}
			out = append(out, p)
		}
	}
	return out
}

// twin is the cell with def's settings and the given arm.
func twin(f *results.File, def *results.Cell, arm matrix.Arm) *results.Cell {
	for i := range f.Cells {
		c := &f.Cells[i]
		if c.OK() && c.Arm == arm && c.Key == def.Key+"/"+string(arm) {
			return c
		}
	}
	return nil
}
