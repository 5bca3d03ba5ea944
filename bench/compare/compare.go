// Package compare finds overhead regressions between two bench runs: per
// cell, the bootstrap CI of the change in throughput overhead (percentage
// points); a regression is a change whose whole interval lies above the
// threshold, so noise alone does not fail a build.
package compare

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

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

// Row compares one cell.
type Row struct {
	Key     string
	Label   string
	Old     stats.Estimate // throughput overhead %, old run
	New     stats.Estimate
	Diff    stats.Estimate // New − Old, percentage points
	Verdict string
	Note    string
}

// Cells compares every cell key present in either run.
func Cells(old, cur *results.File, threshold float64) []Row {
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
		r := Row{Key: k}
		switch {
		case o == nil || !o.OK():
			r.Verdict, r.Note, r.Label = Missing, "not measured in OLD", n.Label()
		case n == nil || !n.OK():
			r.Verdict, r.Note, r.Label = Missing, "not measured in NEW", o.Label()
		default:
			r.Label = n.Label()
			r.Old = stats.EstimateMedian(o.OverheadSamples(), o.Seed())
			r.New = stats.EstimateMedian(n.OverheadSamples(), n.Seed())
			r.Diff = stats.EstimateDiff(o.OverheadSamples(), n.OverheadSamples(), n.Seed())
			switch {
			case r.Diff.Significant && r.Diff.Low > threshold:
				r.Verdict = Regression
			case r.Diff.Significant && r.Diff.High < -threshold:
				r.Verdict = Improved
			default:
				r.Verdict = Same
			}
			if min(len(o.Observed), len(n.Observed)) < stats.MinSignificant {
				r.Note = fmt.Sprintf("too few pairs to judge (< %d)", stats.MinSignificant)
			}
			if o.Kernel != n.Kernel {
				r.Note = fmt.Sprintf("kernels differ: %s vs %s", o.Kernel, n.Kernel)
			}
		}
		rows = append(rows, r)
	}
	return rows
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
func Print(w io.Writer, rows []Row, threshold float64) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "cell\told overhead\tnew overhead\tchange [95% CI]\tverdict\t")
	for _, r := range rows {
		if r.Verdict == Missing {
			fmt.Fprintf(tw, "%s\t\t\t\t%s (%s)\t\n", r.Label, r.Verdict, r.Note)
			continue
		}
		fmt.Fprintf(tw, "%s\t%+.1f%% ±%.1f\t%+.1f%% ±%.1f\t%+.1f pp [%+.1f, %+.1f]\t%s\t%s\n", r.Label,
			r.Old.Median, (r.Old.High-r.Old.Low)/2, r.New.Median, (r.New.High-r.New.Low)/2,
			r.Diff.Median, r.Diff.Low, r.Diff.High, r.Verdict, r.Note)
	}
	tw.Flush()
	n := 0
	for _, r := range rows {
		if r.Verdict == Regression {
			n++
		}
	}
	fmt.Fprintf(w, "\n%d regression(s): a cell regresses when the whole 95%% CI of its overhead change lies above +%.1f percentage points.\n", n, threshold)
}
