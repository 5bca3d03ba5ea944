// Package report writes report.md (environment, tables, figures, the
// command that reproduces the run) and benchstat.txt next to results.json.
package report

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/plot"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/stats"
)

// Write renders plots, report.md and benchstat.txt for f into dir.
func Write(f *results.File, dir string) error {
	figs, err := plot.All(f, dir)
	if err != nil {
		return err
	}
	var b strings.Builder
	Markdown(&b, f, figs)
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	out, err := os.Create(filepath.Join(dir, "benchstat.txt"))
	if err != nil {
		return err
	}
	if err := WriteBenchstat(out, f, ""); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Markdown writes the report body.
func Markdown(w io.Writer, f *results.File, figs []plot.Figure) {
	m := f.Meta
	fmt.Fprintf(w, "# Observer overhead: profile `%s` on Linux %s\n\n", m.Profile, m.Kernel)
	environment(w, f)
	fmt.Fprintf(w, "## Throughput overhead\n\n")
	fmt.Fprintf(w, "Overhead = 1 − observed/baseline throughput, median over ABBA-interleaved pairs, with a 95%% bootstrap CI (seeded). ")
	fmt.Fprintf(w, "`~` marks an interval that spans zero: no measurable difference. p is the Mann-Whitney U test of baseline vs observed throughput. ")
	fmt.Fprintf(w, "Latency columns: change of the observed percentile, positive = slower.\n\n")
	overheadTable(w, f)
	aaCheck(w, f)
	bpfStatsCost(w, f)
	costTable(w, f)
	programTable(w, f)
	problems(w, f)
	if len(figs) > 0 {
		fmt.Fprintf(w, "## Figures\n\n")
		for _, fig := range figs {
			fmt.Fprintf(w, "![%s](%s)\n\n*%s*\n\n", fig.Caption, fig.File, fig.Caption)
		}
	}
	fmt.Fprintf(w, "## Reading this report\n\nSee `docs/bench.md` for what each number means and the statistics behind it. ")
	fmt.Fprintf(w, "Every figure is recomputable from the raw samples in `results.json`; `benchstat.txt` holds them in Go benchmark format (`benchstat -col /arm benchstat.txt`).\n")
}

func environment(w io.Writer, f *results.File) {
	m := f.Meta
	fmt.Fprintf(w, "## Environment\n\n| | |\n| --- | --- |\n")
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "| %s | %s |\n", k, v)
		}
	}
	row("kernel", m.Kernel)
	row("commit", "`"+m.Commit+"`")
	row("CPUs", fmt.Sprintf("%d × %s", m.CPUs, m.CPUModel))
	row("host", m.Hostname)
	row("Go", m.GoVersion)
	row("started", m.Start.Format(time.RFC3339))
	if !m.End.IsZero() {
		row("wall time", m.End.Sub(m.Start).Round(time.Second).String())
	}
	row("load average at start", m.LoadAvgAtStart)
	row("BPF programs loaded by others at start", fmt.Sprint(m.ForeignBPFProg))
	row("observer", "`"+m.Observer+"`")
	row("loadgen", "`"+m.Loadgen+"`")
	r := m.Run
	row("per run", fmt.Sprintf("%s settle (both arms), %s warm-up, %s measured; %d ABBA pairs per cell", r.Settle.D(), r.Warmup.D(), r.Duration.D(), r.Pairs))
	if len(m.Resumed) > 0 {
		row("resumed", fmt.Sprint(len(m.Resumed), " time(s)"))
	}
	fmt.Fprintf(w, "\nReproduce:\n\n```sh\n%s\n```\n\n", Reproduce(m))
}

// Reproduce is the command line that produced the results, shell-quoted.
func Reproduce(m results.Meta) string {
	if len(m.Command) == 0 {
		return fmt.Sprintf("bin/bench run --profile %s", m.Profile)
	}
	q := make([]string, len(m.Command))
	for i, a := range m.Command {
		if a == "" || strings.ContainsAny(a, " '\"$`\\*?;&|<>(){}") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

func okCells(f *results.File) []results.Cell { return f.Measured() }

func pct(e stats.Estimate) string {
	if e.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%+.1f%% [%+.1f, %+.1f]%s", e.Median, e.Low, e.High, e.Marker())
}

// CellEstimate is the cell's throughput overhead as an Estimate.
func CellEstimate(c *results.Cell) stats.Estimate {
	return stats.Estimate{Median: c.ThroughputOverheadPct, Low: c.CILow, High: c.CIHigh, Significant: c.Significant, N: len(c.Observed)}
}

func overheadTable(w io.Writer, f *results.File) {
	fmt.Fprintf(w, "| cell | baseline | observed | overhead [95%% CI] | p | p50 latency | p99 latency |\n| --- | ---: | ---: | --- | ---: | --- | --- |\n")
	for _, c := range okCells(f) {
		unit := "ops/s"
		if c.ThroughputMetric == "throughput_bps" {
			unit = "Gbit/s"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %.3f | %s | %s |\n", c.Label(),
			throughput(c.BaselineThroughput, unit), throughput(c.ObservedThroughput, unit),
			pct(CellEstimate(&c)), c.PValue, pct(c.LatencyOverheadPct["p50"]), pct(c.LatencyOverheadPct["p99"]))
	}
	fmt.Fprintln(w)
}

func throughput(s stats.Summary, unit string) string {
	if unit == "Gbit/s" {
		return fmt.Sprintf("%.2f ± %.2f %s", s.Median/1e9, s.MAD/1e9, unit)
	}
	return fmt.Sprintf("%.0f ± %.0f %s", s.Median, s.MAD, unit)
}

// aaCheck reports the no-observer cells: both arms identical, so any
// significant "overhead" there is bias of the harness or the machine.
func aaCheck(w io.Writer, f *results.File) {
	for _, c := range okCells(f) {
		if c.SampleRate != matrix.Off {
			continue
		}
		e := CellEstimate(&c)
		verdict := "no bias detected: the harness treats both arms alike"
		if e.Significant {
			verdict = "**significant although both arms are identical**: the machine drifted or was disturbed; treat the other cells' small overheads with care"
		}
		fmt.Fprintf(w, "A/A check (%s, no observer in either arm): %s — %s.\n\n", c.Workload, pct(e), verdict)
	}
}

// bpfStatsCost reports the statistics' cost per run measured at start, and
// compares each bpf_stats=on or off cell with its twin at the observer's
// default (sampled).
func bpfStatsCost(w io.Writer, f *results.File) {
	if c := f.Meta.BPFStatsCost; c != nil {
		if c.OnNsPerRun > 0 {
			fmt.Fprintf(w, "BPF run-time statistics add %.1f ns to every BPF program run on this machine while they are on (empty program under BPF_PROG_TEST_RUN: %.1f ns per run without, %.1f with). "+
				"The *stats ns/op* column below is that times the runs per operation, in the cells that keep them on. %s\n\n", c.AddedNsPerRun, c.OffNsPerRun, c.OnNsPerRun, c.Note)
		} else {
			fmt.Fprintf(w, "BPF statistics cost per run: %s\n\n", c.Note)
		}
	}
	for _, other := range okCells(f) {
		if other.BPFStats == matrix.StatsSampled {
			continue
		}
		def := f.Find(strings.TrimSuffix(other.Key, "/bpf_stats="+string(other.BPFStats)))
		if def == nil || !def.OK() {
			continue
		}
		d := stats.EstimateDiff(def.OverheadSamples(), other.OverheadSamples(), def.Seed()) // other − default
		fmt.Fprintf(w, "BPF run-time statistics %s (%s): overhead %+.1f%%, against %+.1f%% with them sampled (the observer's default), difference %s. "+
			"Only bpf_stats=on cells time the programs (BPF ns/op).\n\n",
			other.BPFStats, def.Label(), other.ThroughputOverheadPct, def.ThroughputOverheadPct, pct(d))
	}
}

func costTable(w io.Writer, f *results.File) {
	added := 0.0
	if sc := f.Meta.BPFStatsCost; sc != nil {
		added = sc.AddedNsPerRun
	}
	fmt.Fprintf(w, "## Observer cost\n\n| cell | BPF ns/op | stats ns/op | agent CPU ns/op | agent CPU at rest | peak RSS | map memory | events lost | sampled out |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range okCells(f) {
		if c.SampleRate == matrix.Off {
			continue
		}
		runs := 0.0
		for _, r := range c.RunsPerOp {
			runs += r
		}
		bpfNs, statsNs := "— (not timed)", "—"
		if len(c.RunsPerOp) > 0 {
			bpfNs, statsNs = fmt.Sprintf("%.0f", c.BPFNsPerOp()), fmt.Sprintf("%.0f", runs*added)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.0f | %.2f%% | %.1f MiB | %.1f KiB | %.0f | %.0f |\n", c.Label(), bpfNs, statsNs, c.AgentCPUPerOpNs,
			100*c.AgentRestCPUShare, float64(c.AgentPeakRSSBytes)/(1<<20), float64(c.MapMemoryBytes)/1024, c.EventsLost, c.EventsSampledOut)
	}
	fmt.Fprintln(w, "\n*Not timed*: bench times the programs only where the kernel's statistics stay on (bpf_stats=on); the observer's default samples them, and their counters then move only inside its windows.")
	fmt.Fprintln(w, "*Agent CPU at rest*: the observer's CPU time over the settle gap before each observed run (running, no load), as a share of one CPU.")
	fmt.Fprintln(w)
}

func programTable(w io.Writer, f *results.File) {
	var lines []string
	for _, c := range okCells(f) {
		progs := make([]string, 0, len(c.BPFNsPerRun))
		for p := range c.BPFNsPerRun {
			progs = append(progs, p)
		}
		sort.Strings(progs)
		for _, p := range progs {
			lines = append(lines, fmt.Sprintf("| %s | `%s` | %.0f | %.2f |", c.Label(), p, c.BPFNsPerRun[p], c.RunsPerOp[p]))
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(w, "## BPF programs\n\nFrom the kernel's run-time statistics (`bpf_prog_info.run_time_ns`, `run_cnt`), diffed over the measured windows.\n\n")
	fmt.Fprintf(w, "| cell | program | ns per run | runs per op |\n| --- | --- | ---: | ---: |\n%s\n\n", strings.Join(lines, "\n"))
}

func problems(w io.Writer, f *results.File) {
	var lines []string
	for _, c := range f.Cells {
		if !c.OK() {
			lines = append(lines, fmt.Sprintf("- **%s failed**: %s", c.Key, c.Error))
		}
		seen := map[string]bool{}
		for _, warn := range c.Warnings {
			if !seen[warn] {
				seen[warn] = true
				lines = append(lines, fmt.Sprintf("- %s: %s", c.Key, warn))
			}
		}
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "## Failures and warnings\n\n%s\n\n", strings.Join(lines, "\n"))
	}
}
