// Package compare is the gate: it decides whether the observer got
// costlier, between two runs (bench compare OLD NEW) or, better, between
// two observers measured side by side in one run (bench compare DIR --old
// A --new B), where every round pairs them on the same baseline. One rule
// decides everywhere (Regresses), and Power measures what that rule can
// see at a run's pairs.
package compare

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/stats"
)

// Verdict of one cell.
const (
	Regression = "REGRESSION"
	Improved   = "improved"
	Same       = "~"
	Missing    = "missing"
)

// Row compares one cell on one metric.
type Row struct {
	Key     string
	Label   string
	Metric  results.Metric
	Old     stats.Estimate
	New     stats.Estimate
	Diff    stats.Estimate // New − Old
	Verdict string
	Note    string
}

func verdict(diff stats.Estimate, threshold float64) string {
	neg := stats.Estimate{Median: -diff.Median, Low: -diff.High, High: -diff.Low, N: diff.N}
	switch {
	case Regresses(diff, threshold):
		return Regression
	case Regresses(neg, threshold):
		return Improved
	}
	return Same
}

// Cells compares every cell key present in either run, on throughput
// overhead and, where both runs timed the programs, on the accounted cost
// per operation. Two runs are not paired: each side's interval is its own.
func Cells(old, cur *results.File, th Thresholds) []Row {
	keys := map[string]bool{}
	for _, f := range []*results.File{old, cur} {
		for _, c := range f.Cells {
			keys[c.Key] = true
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var rows []Row
	for _, k := range sorted {
		o, n := old.Find(k), cur.Find(k)
		switch {
		case o == nil || !o.OK():
			rows = append(rows, Row{Key: k, Verdict: Missing, Note: "not measured in OLD", Label: n.Label()})
			continue
		case n == nil || !n.OK():
			rows = append(rows, Row{Key: k, Verdict: Missing, Note: "not measured in NEW", Label: o.Label()})
			continue
		}
		note := ""
		if min(len(o.Observed), len(n.Observed)) < stats.MinSignificant {
			note = fmt.Sprintf("too few pairs to judge (< %d)", stats.MinSignificant)
		}
		if o.Kernel != n.Kernel {
			note = fmt.Sprintf("kernels differ: %s vs %s", o.Kernel, n.Kernel)
		}
		for _, m := range []results.Metric{results.MetricThroughput, results.MetricAccounted} {
			a, b := results.InRoundOrder(o.PerPair(m)), results.InRoundOrder(n.PerPair(m))
			if len(a) == 0 || len(b) == 0 {
				continue
			}
			r := Row{Key: k, Label: n.Label(), Metric: m, Note: note,
				Old: stats.EstimateMedian(a, o.Seed()), New: stats.EstimateMedian(b, n.Seed()),
				Diff: stats.EstimateDiff(a, b, n.Seed())}
			r.Verdict = verdict(r.Diff, th.For(m))
			rows = append(rows, r)
		}
	}
	return rows
}

// Observers compares observer newName with oldName in one run: every cell
// of one with its twin of the other, on every metric both have, paired by
// round (the baseline cancels).
func Observers(f *results.File, oldName, newName string, th Thresholds) ([]Row, error) {
	names := map[string]bool{}
	for _, c := range f.Cells {
		if c.Observer != "" {
			names[c.Observer] = true
		}
	}
	for _, n := range []string{oldName, newName} {
		if !names[n] {
			var have []string
			for k := range names {
				have = append(have, k)
			}
			sort.Strings(have)
			return nil, fmt.Errorf("observer %q was not measured in this run (it has: %s); run bench run --observer NAME=BIN for each", n, strings.Join(have, ", "))
		}
	}
	var rows []Row
	for i := range f.Cells {
		o := &f.Cells[i]
		if o.Observer != oldName {
			continue
		}
		n := f.Find(strings.Replace(o.Key, "/observer="+oldName, "/observer="+newName, 1))
		if n == nil || !n.OK() || !o.OK() {
			rows = append(rows, Row{Key: o.Key, Label: o.Label(), Verdict: Missing, Note: "not measured for both observers"})
			continue
		}
		for _, m := range []results.Metric{results.MetricAccounted, results.MetricCPU, results.MetricThroughput} {
			d := results.PairedDiff(o, n, m)
			if len(d) == 0 {
				continue
			}
			label := strings.Replace(o.Label(), " ["+oldName+"]", "", 1)
			r := Row{Key: o.Key, Label: label, Metric: m,
				Old: stats.EstimateMedian(results.InRoundOrder(o.PerPair(m)), o.Seed()), New: stats.EstimateMedian(results.InRoundOrder(n.PerPair(m)), n.Seed()),
				Diff: stats.EstimateMedian(d, n.Seed())}
			r.Verdict = verdict(r.Diff, th.For(m))
			if len(d) < stats.MinSignificant {
				r.Note = fmt.Sprintf("too few pairs to judge (< %d)", stats.MinSignificant)
			}
			rows = append(rows, r)
		}
	}
	return rows, nil
}

// Regressed reports whether any row is a regression.
func Regressed(rows []Row) bool {
	for _, r := range rows {
		if r.Verdict == Regression {
			return true
		}
	}
	return false
}

// Print writes the comparison as an aligned table.
func Print(w io.Writer, rows []Row, th Thresholds) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "cell\tmetric\told\tnew\tchange [95% CI]\tverdict\t")
	for _, r := range rows {
		if r.Verdict == Missing {
			fmt.Fprintf(tw, "%s\t\t\t\t\t%s (%s)\t\n", r.Label, r.Verdict, r.Note)
			continue
		}
		prec, unit := 1, "pp"
		if r.Metric.Unit() != "pct" {
			prec, unit = 0, "ns/op"
		}
		fmt.Fprintf(tw, "%s\t%s\t%+.*f ±%.*f\t%+.*f ±%.*f\t%+.*f %s [%+.*f, %+.*f]\t%s\t%s\n", r.Label, r.Metric,
			prec, r.Old.Median, prec, (r.Old.High-r.Old.Low)/2, prec, r.New.Median, prec, (r.New.High-r.New.Low)/2,
			prec, r.Diff.Median, unit, prec, r.Diff.Low, prec, r.Diff.High, r.Verdict, r.Note)
	}
	tw.Flush()
	n := 0
	for _, r := range rows {
		if r.Verdict == Regression {
			n++
		}
	}
	fmt.Fprintf(w, "\n%d regression(s): a change regresses when its whole 95%% CI lies above zero and its estimate above the threshold (+%.1f points of throughput, +%.0f ns per operation).\n", n, th.Pct, th.Ns)
}

// Biased lists the run's A/A cells (no observer in either arm) whose
// interval excludes zero: the instrument itself moved, so nothing small
// can be decided from the run.
func Biased(f *results.File) []string {
	var out []string
	for i := range f.Cells {
		c := &f.Cells[i]
		if c.OK() && !c.SampleRate.Observed() && c.Arm == matrix.ArmObserver {
			if e := c.Primary(); e.Significant {
				out = append(out, fmt.Sprintf("%s: %+.1f%% [%+.1f, %+.1f]", c.Label(), e.Median, e.Low, e.High))
			}
		}
	}
	return out
}
