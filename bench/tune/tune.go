// Package tune picks the sampling configuration to roll out: the highest
// fidelity (lowest sample rate, i.e. the per-ACK RTT samples of the most
// connections kept) whose throughput overhead stays inside a budget with 95%
// confidence (the CI's upper bound), and says what it and the next step up
// in fidelity cost and, where the run measured it, how far each one's RTT
// distribution strays from rate 1's on the same traffic.
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
	// Fidelity is the run's accuracy measurements (results.Meta.Fidelity):
	// each sample rate's RTT distribution against rate 1's.
	Fidelity []results.Fidelity
}

// Choose considers the ok, observed cells of the workload (a workload name
// or a mode) measured with BPF statistics as the observer runs by default.
func Choose(f *results.File, budget float64, workload string) (Choice, error) {
	ch := Choice{Budget: budget, Fidelity: f.Meta.Fidelity}
	var cands []*results.Cell
	for i := range f.Cells {
		c := &f.Cells[i]
		if candidate(c, workload) {
			cands = append(cands, c)
		}
	}
	ch.Candidates = len(cands)
	if len(cands) == 0 {
		return ch, fmt.Errorf("no measured configurations for workload %q in these results", workload)
	}
	// fidelity first (rate 1 keeps every RTT sample), then cost
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
	fmt.Fprintf(w, "  %s\n", keeps(c))
	fmt.Fprintf(w, "  throughput overhead %+.1f%% (95%% CI %+.1f … %+.1f) on %s, budget %.1f%%\n",
		c.ThroughputOverheadPct, c.CILow, c.CIHigh, c.Workload, ch.Budget)
	fmt.Fprintf(w, "  confidence: %.0f%% of bootstrap resamples put the median overhead within budget; the CI's upper bound is %.1f points below it\n",
		100*ch.Confidence, ch.Budget-c.CIHigh)
	fmt.Fprintf(w, "  %s\n", cost(c))
	fmt.Fprintf(w, "  %s\n", fidelity(ch.Fidelity, c))
	if len(c.Observed) < stats.MinSignificant {
		fmt.Fprintf(w, "  caution: only %d pairs measured; run the quick or full profile before acting on this\n", len(c.Observed))
	}
	if n := ch.NextUp; n != nil {
		fmt.Fprintf(w, "next step up: %s would cost %+.1f%% (95%% CI %+.1f … %+.1f): over budget\n",
			flags(n), n.ThroughputOverheadPct, n.CILow, n.CIHigh)
		fmt.Fprintf(w, "  %s\n", keeps(n))
		fmt.Fprintf(w, "  %s\n", cost(n))
		fmt.Fprintf(w, "  %s\n", fidelity(ch.Fidelity, n))
	} else if c.SampleRate == 1 {
		fmt.Fprintf(w, "next step up: none, rate 1 already keeps every RTT sample\n")
	}
}

// cost is what the cell's observer spent per operation.
func cost(c *results.Cell) string {
	mem := fmt.Sprintf("%.1f MiB peak RSS, %.0f events lost", float64(c.AgentPeakRSSBytes)/(1<<20), c.EventsLost)
	switch a := c.Accounted; {
	case a.N > 0:
		return fmt.Sprintf("cost: %.0f ns [%.0f, %.0f] per operation accounted (%.0f ns BPF + %.0f ns observer CPU), %s",
			a.Median, a.Low, a.High, c.BPFNetPerOpNs, c.AgentCPUPerOpNs, mem)
	case len(c.RunsPerOp) > 0:
		return fmt.Sprintf("cost: %.0f ns BPF + %.0f ns agent CPU per operation, %s", c.BPFNsPerOp(), c.AgentCPUPerOpNs, mem)
	}
	return fmt.Sprintf("cost: BPF not timed (no accounting run) + %.0f ns agent CPU per operation, %s", c.AgentCPUPerOpNs, mem)
}

// keeps says what the cell's sample rate thins: only the per-ACK RTT
// samples, a whole connection's at a time (a hash of the connection).
func keeps(c *results.Cell) string {
	const exact = "bytes, retransmits and lifecycle stay exact"
	if c.SampleRate <= 1 {
		return "keeps every per-ACK RTT sample; " + exact
	}
	return fmt.Sprintf("keeps the per-ACK RTT samples of about 1 in %d connections; %s", int(c.SampleRate), exact)
}

// fidelity says how far the cell's RTT distribution strays from rate 1's,
// from the run's side-by-side measurement of the cell's workload and rate.
func fidelity(fs []results.Fidelity, c *results.Cell) string {
	if c.SampleRate <= 1 {
		return "fidelity: exact (every RTT sample)"
	}
	fd := findFidelity(fs, c)
	if fd == nil {
		return "fidelity not measured in this run (bench run --profile sampling measures it)"
	}
	pct := func(q string) string {
		v, ok := fd.QuantileErrorPct[q]
		if !ok {
			return "n/a"
		}
		return fmt.Sprintf("%+.1f%%", v)
	}
	return fmt.Sprintf("fidelity vs rate 1 on the same traffic: p50 %s, p90 %s, p99 %s, KS %.3f (%.0f of %.0f RTT samples kept)",
		pct("p50"), pct("p90"), pct("p99"), fd.KS, fd.Samples, fd.ReferenceSamples)
}

// findFidelity returns the measurement of the cell's rate on its workload,
// matched by name, or else by mode (a measurement labelled "crr").
func findFidelity(fs []results.Fidelity, c *results.Cell) *results.Fidelity {
	var byMode *results.Fidelity
	for i := range fs {
		fd := &fs[i]
		if fd.SampleRate != int(c.SampleRate) {
			continue
		}
		if fd.Workload == c.Workload {
			return fd
		}
		if byMode == nil && c.WorkloadSpec.Mode != "" && fd.Workload == c.WorkloadSpec.Mode {
			byMode = fd
		}
	}
	return byMode
}

// Cheapest lists the candidates by the upper bound of their CI.
func Cheapest(f *results.File, workload string) []*results.Cell {
	var out []*results.Cell
	for i := range f.Cells {
		c := &f.Cells[i]
		if candidate(c, workload) {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CIHigh < out[j].CIHigh })
	return out
}

// candidate reports whether c is a configuration to roll out: measured to
// the end, the observer alone in its arm (no injected cost, no A/A twin),
// with the observer's default BPF statistics, on the workload (a name or a
// mode; "" = any).
func candidate(c *results.Cell, workload string) bool {
	return c.OK() && c.SampleRate != matrix.Off && c.Arm == matrix.ArmObserver && c.BPFStats == matrix.DefaultStats &&
		(workload == "" || c.Workload == workload || c.WorkloadSpec.Mode == workload)
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
