// Package tune picks the sampling configuration to roll out: the highest
// fidelity (lowest sample rate, i.e. most events kept) whose throughput
// overhead stays inside a budget with 95% confidence (the CI's upper bound),
// and says what the next step up in fidelity would cost.
package tune

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/stats"
)

// Choice is tune's answer.
type Choice struct {
	Budget     float64
	Best       *results.Cell // nil when nothing fits
	Confidence float64       // bootstrap share of medians within the budget
	NextUp     *results.Cell // the cheapest configuration of higher fidelity, which does not fit
	Candidates int
}

// Choose considers the ok, observed cells of the workload (a workload name
// or a mode) measured with BPF statistics on, as the observer runs by default.
func Choose(f *results.File, budget float64, workload string) (Choice, error) {
	ch := Choice{Budget: budget}
	var cands []*results.Cell
	for i := range f.Cells {
		c := &f.Cells[i]
		if c.OK() && c.SampleRate != matrix.Off && c.BPFStats == matrix.StatsSampled && (workload == "" || c.Workload == workload || c.WorkloadSpec.Mode == workload) {
			cands = append(cands, c)
		}
	}
	ch.Candidates = len(cands)
	if len(cands) == 0 {
		return ch, fmt.Errorf("no measured configurations for workload %q in these results", workload)
	}
	// fidelity first (rate 1 keeps every event), then cost
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.SampleRate != b.SampleRate {
			return a.SampleRate < b.SampleRate
		}
		if a.ThroughputOverheadPct != b.ThroughputOverheadPct {
			return a.ThroughputOverheadPct < b.ThroughputOverheadPct
		}
		return a.AgentCPUPerOpNs+a.BPFNsPerOp() < b.AgentCPUPerOpNs+b.BPFNsPerOp()
	})
	for i, c := range cands {
		if c.CIHigh <= budget {
			ch.Best = c
			ch.Confidence = stats.FractionAtMost(c.OverheadSamples(), budget, c.Seed())
			// the next step up: the cheapest cell at the next lower rate
			for j := i - 1; j >= 0; j-- {
				if cands[j].SampleRate < c.SampleRate {
					k := j
					for k > 0 && cands[k-1].SampleRate == cands[j].SampleRate {
						k--
					}
					ch.NextUp = cands[k]
					break
				}
			}
			return ch, nil
		}
	}
	return ch, nil
}

// Print explains the choice.
func Print(w io.Writer, ch Choice, all []*results.Cell) {
	if ch.Best == nil {
		fmt.Fprintf(w, "no configuration stays within %.1f%% overhead with 95%% confidence (%d measured).\n", ch.Budget, ch.Candidates)
		if len(all) > 0 {
			c := all[0]
			fmt.Fprintf(w, "cheapest measured: %s at %+.1f%% (95%% CI %+.1f … %+.1f); raise the budget or measure higher sample rates.\n",
				flags(c), c.ThroughputOverheadPct, c.CILow, c.CIHigh)
		}
		return
	}
	c := ch.Best
	fmt.Fprintf(w, "recommended: %s\n", flags(c))
	fmt.Fprintf(w, "  keeps 1 in %d events; throughput overhead %+.1f%% (95%% CI %+.1f … %+.1f) on %s, budget %.1f%%\n",
		int(c.SampleRate), c.ThroughputOverheadPct, c.CILow, c.CIHigh, c.Workload, ch.Budget)
	fmt.Fprintf(w, "  confidence: %.0f%% of bootstrap resamples put the median overhead within budget; the CI's upper bound is %.1f points below it\n",
		100*ch.Confidence, ch.Budget-c.CIHigh)
	bpf := "BPF not timed (statistics sampled)"
	if len(c.RunsPerOp) > 0 {
		bpf = fmt.Sprintf("%.0f ns BPF", c.BPFNsPerOp())
	}
	fmt.Fprintf(w, "  cost: %s + %.0f ns agent CPU per operation, %.1f MiB peak RSS, %.0f events lost\n",
		bpf, c.AgentCPUPerOpNs, float64(c.AgentPeakRSSBytes)/(1<<20), c.EventsLost)
	if len(c.Observed) < stats.MinSignificant {
		fmt.Fprintf(w, "  caution: only %d pairs measured; run the quick or full profile before acting on this\n", len(c.Observed))
	}
	if n := ch.NextUp; n != nil {
		fmt.Fprintf(w, "next step up: %s would cost %+.1f%% (95%% CI %+.1f … %+.1f): over budget\n",
			flags(n), n.ThroughputOverheadPct, n.CILow, n.CIHigh)
	} else if c.SampleRate == 1 {
		fmt.Fprintf(w, "next step up: none, rate 1 already keeps every event\n")
	}
}

// Cheapest lists the candidates by the upper bound of their CI.
func Cheapest(f *results.File, workload string) []*results.Cell {
	var out []*results.Cell
	for i := range f.Cells {
		c := &f.Cells[i]
		if c.OK() && c.SampleRate != matrix.Off && c.BPFStats == matrix.StatsSampled && (workload == "" || c.Workload == workload || c.WorkloadSpec.Mode == workload) {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CIHigh < out[j].CIHigh })
	return out
}

func flags(c *results.Cell) string {
	parts := []string{fmt.Sprintf("--sample-rate %d", int(c.SampleRate))}
	if c.Transport != "external" {
		parts = append(parts, "--transport "+c.Transport)
	}
	if c.MapType != "external" {
		parts = append(parts, "--map-type "+c.MapType)
	}
	return strings.Join(parts, " ")
}
