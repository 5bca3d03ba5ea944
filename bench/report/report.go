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

// Write renders plots, report.md and benchstat.txt for f into dir, and
// removes the plots an earlier run left there that this one does not
// draw, so a directory never mixes two runs' figures.
func Write(f *results.File, dir string) error {
	old, _ := filepath.Glob(filepath.Join(dir, "*.png"))
	figs, err := plot.All(f, dir)
	if err != nil {
		return err
	}
	drawn := map[string]bool{}
	for _, fig := range figs {
		drawn[fig.File] = true
	}
	for _, p := range old {
		if !drawn[filepath.Base(p)] {
			os.Remove(p)
		}
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
	aaCheck(w, f)
	costPerOp(w, f)
	gatePower(w, f)
	fmt.Fprintf(w, "## Throughput at saturation\n\n")
	fmt.Fprintf(w, "Closed loop. Overhead = 1 − observed/baseline throughput, median over rounds (each arm paired with its round's baseline; the order of the arms changes every round), with a 95%% bootstrap CI (seeded). ")
	fmt.Fprintf(w, "`~` marks an interval that spans zero: no measurable difference. p is the Mann-Whitney U test of baseline vs observed throughput. ")
	fmt.Fprintf(w, "Latency columns: change of the observed percentile, positive = slower.\n\n")
	overheadTable(w, f)
	fixedLoad(w, f)
	fidelityTable(w, f)
	precision(w, f)
	bpfStatsCost(w, f)
	costTable(w, f)
	scaleTable(w, f)
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
func CellEstimate(c *results.Cell) stats.Estimate { return results.CellEstimate(c) }

func overheadTable(w io.Writer, f *results.File) {
	fmt.Fprintf(w, "| cell | baseline | observed | overhead [95%% CI] | p | p50 latency | p99 latency |\n| --- | ---: | ---: | --- | ---: | --- | --- |\n")
	for _, c := range okCells(f) {
		if c.WorkloadSpec.OpenLoop() {
			continue
		}
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

// aaCheck reports the no-observer cells: both arms identical, so an
// interval that excludes zero there is bias of the harness or the machine,
// and the run decides nothing small.
func aaCheck(w io.Writer, f *results.File) {
	for _, c := range okCells(f) {
		if c.SampleRate != matrix.Off || c.Arm != matrix.ArmObserver {
			continue
		}
		e := c.Primary()
		verdict := "interval includes zero: no bias detected"
		if e.Significant {
			verdict = "**the instrument is biased in this run**: the interval excludes zero although both arms are identical; `bench compare` and `bench tune` refuse to decide from it"
		}
		fmt.Fprintf(w, "**A/A check** (%s, no observer in either arm, %s): %s — %s.\n\n", c.Workload, c.PrimaryMetric, pct(e), verdict)
	}
}

func ns(v float64) string { return fmt.Sprintf("%.0f", v) }

func nsCI(e stats.Estimate) string {
	if e.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f [%.0f, %.0f]", e.Median, e.Low, e.High)
}

// costPerOp is the cost per operation, accounted and end to end.
func costPerOp(w io.Writer, f *results.File) {
	var lines []string
	for _, c := range okCells(f) {
		if !c.SampleRate.Observed() && c.Arm != matrix.ArmFloor {
			continue
		}
		cpu := stats.Estimate{Median: c.CPUPerOpNs, Low: c.CPUPerOpCILow, High: c.CPUPerOpCIHigh, N: len(c.Observed)}
		if c.BaselineCPUPerOpNs == 0 {
			cpu.N = 0
		}
		runs := make([]string, 0, len(c.RunsPerOp))
		for _, p := range sortedKeys(c.RunsPerOp) {
			if c.RunsPerOp[p] >= 0.005 {
				runs = append(runs, fmt.Sprintf("%s %.0f ns × %.2f", p, c.BPFNsPerRun[p], c.RunsPerOp[p]))
			}
		}
		unacc, acc, dispatch := "–", "–", "–"
		if c.Accounted.N > 0 && cpu.N > 0 {
			unacc = ns(c.UnaccountedPerOpNs)
		}
		if c.Arm != matrix.ArmFloor {
			acc, dispatch = nsCI(c.Accounted), nsCI(c.DispatchCI)
		}
		lines = append(lines, fmt.Sprintf("| %s | %s | %s (%s) | %s | %s | %s | %s | %s |", c.Label(), acc, ns(c.BPFNetPerOpNs), ns(c.BPFPerOpNs),
			ns(c.AgentCPUPerOpNs), dispatch, nsCI(cpu), unacc, strings.Join(runs, "; ")))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(w, "## Cost per operation\n\n")
	fmt.Fprintf(w, "*Accounted* = BPF run time per operation + the observer's own CPU per operation + the kernel's dispatch of the hooks. BPF run time is timed in a short accounting run after each measured one, with the kernel's statistics on; *net* takes off, run for run, what the floor's empty program on the same hook measures (the statistics' own clock reads), *gross* does not. ")
	fmt.Fprintf(w, "*Dispatch* is the floor cell's end-to-end cost: empty programs of bench's own on the observer's hooks. The accounted interval covers the parts measured per pair (BPF, observer CPU); the dispatch's own interval is shown beside it, and where it reaches below zero the dispatch is unresolved and counts as 0. Cells of a workload without a floor cell take the statistics' per-run time from another workload's floor, and count no dispatch. ")
	fmt.Fprintf(w, "*End to end* = CPU time per operation of the load (its own cgroup) and the observer, observed − baseline, paired by round. *Unaccounted* = end to end − accounted: cache effects and whatever else the observer's presence costs. ns per operation, median [95%% CI].\n\n")
	fmt.Fprintf(w, "| cell | accounted | BPF net (gross) | observer CPU | dispatch | end to end | unaccounted | programs: ns per run × runs per op |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n%s\n\n", strings.Join(lines, "\n"))
}

// gatePower states what the run's gate can see, measured.
func gatePower(w io.Writer, f *results.File) {
	if len(f.Meta.Power) == 0 {
		return
	}
	fmt.Fprintf(w, "## What this run can decide\n\n")
	fmt.Fprintf(w, "The gate flags a change when its 95%% interval lies above zero and its estimate above the threshold. Measured by resampling this run's own pairs (%d simulated runs each): ", 400)
	fmt.Fprintf(w, "*detectable* is the smallest added cost flagged in 95%% of runs of this many pairs, from the A/A pairs' spread; *false alarms* the share of A/A runs flagged; *injected* the measured cost of the inject arm (a bounded loop bench adds to every connect()) and the share of runs that flag it.\n\n")
	fmt.Fprintf(w, "| cell | metric | pairs | threshold | detectable | false alarms | injected | detected | A/A from |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, p := range f.Meta.Power {
		prec := 0
		if p.Unit == "pct" {
			prec = 1
		}
		det, fa := "–", "–"
		if p.AAPairs >= stats.MinSignificant {
			det, fa = fmt.Sprintf("%.*f %s", prec, p.Detectable, p.Unit), fmt.Sprintf("%.1f%%", 100*p.FalseAlarmRate)
		}
		inj, dr := "–", "–"
		if p.Injected != 0 {
			inj, dr = fmt.Sprintf("%+.*f %s", prec, p.Injected, p.Unit), fmt.Sprintf("%.0f%%", 100*p.DetectionRate)
		}
		fmt.Fprintf(w, "| `%s` | %s | %d | %.*f %s | %s | %s | %s | %s | %s |\n", p.Cell, p.Metric, p.Pairs, prec, p.Threshold, p.Unit, det, fa, inj, dr, p.AAFrom)
	}
	fmt.Fprintln(w)
}

// fixedLoad is the open-loop cells: the load a service runs at.
func fixedLoad(w io.Writer, f *results.File) {
	var lines []string
	for _, c := range okCells(f) {
		if !c.WorkloadSpec.OpenLoop() || c.Arm == matrix.ArmFloor {
			continue
		}
		cpu := stats.Estimate{Median: c.CPUPerOpNs, Low: c.CPUPerOpCILow, High: c.CPUPerOpCIHigh, N: len(c.Observed)}
		cores := c.CPUPerOpNs * 1e4 / 1e9 // ns per op × 10k ops/s = cores
		lines = append(lines, fmt.Sprintf("| %s | %.0f | %.1f | %s | %s | %.3f | %s | %s | %s |", c.Label(), c.OfferedRate, c.BaselineCPUPerOpNs/1000,
			nsCI(cpu), pct(c.CPUOverheadPct), cores, pct(c.LatencyOverheadPct["p50"]), pct(c.LatencyOverheadPct["p99"]), pct(c.LatencyOverheadPct["p999"])))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(w, "## At a fixed load\n\n")
	fmt.Fprintf(w, "Open loop at the offered rate (a fraction of the saturation rate measured at the start: %s). Latency is measured from each operation's due time, so a stall counts for every operation it delays (no coordinated omission). ", saturation(f))
	fmt.Fprintf(w, "CPU added = load + observer CPU per operation, observed − baseline; *cores per 10k/s* is what that costs at 10,000 operations a second.\n\n")
	fmt.Fprintf(w, "| cell | offered ops/s | baseline µs CPU/op | CPU added ns/op | CPU added | cores per 10k/s | p50 latency | p99 latency | p99.9 latency |\n| --- | ---: | ---: | ---: | --- | ---: | --- | --- | --- |\n%s\n\n", strings.Join(lines, "\n"))
}

func saturation(f *results.File) string {
	var parts []string
	for _, k := range sortedKeys(f.Meta.Saturation) {
		parts = append(parts, fmt.Sprintf("%s %.0f ops/s", k, f.Meta.Saturation[k]))
	}
	return strings.Join(parts, ", ")
}

// fidelityTable is what each sample rate costs in accuracy.
func fidelityTable(w io.Writer, f *results.File) {
	if len(f.Meta.Fidelity) == 0 {
		return
	}
	fmt.Fprintf(w, "## What sampling costs in accuracy\n\n")
	fmt.Fprintf(w, "An observer at each rate and one at rate 1 side by side on the same traffic; error of the RTT quantiles (interpolated in the kernel's log2 buckets) and the Kolmogorov-Smirnov distance between the two distributions. Bytes, retransmits and lifecycle are exact at every rate: only RTT samples are thinned.\n\n")
	fmt.Fprintf(w, "| workload | rate | RTT samples kept | p50 error | p90 error | p99 error | KS |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, x := range f.Meta.Fidelity {
		fmt.Fprintf(w, "| %s | %d | %.0f of %.0f | %+.1f%% | %+.1f%% | %+.1f%% | %.3f |\n", x.Workload, x.SampleRate, x.Samples, x.ReferenceSamples,
			x.QuantileErrorPct["p50"], x.QuantileErrorPct["p90"], x.QuantileErrorPct["p99"], x.KS)
	}
	fmt.Fprintln(w)
}

// precision shows the width each cell reached, and the machine-wide CPU
// figure next to the cgroup one it is an alternative to.
func precision(w io.Writer, f *results.File) {
	fmt.Fprintf(w, "## Precision reached\n\n")
	if t := f.Meta.CITarget; t > 0 {
		fmt.Fprintf(w, "Target: ±%.1f points on each cell's primary metric (`--ci-target`).\n\n", t)
	}
	fmt.Fprintf(w, "End-to-end CPU added per operation three ways, median ± half its interval (ns): the load's cgroup, all of it (the reported figure); its kernel time only (with the observer's CPU); the machine's busy time.\n\n")
	fmt.Fprintf(w, "| cell | primary metric | pairs | ± (half width) | cgroup CPU/op | cgroup kernel CPU/op | machine busy/op |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range okCells(f) {
		met := ""
		if t := f.Meta.CITarget; t > 0 {
			met = " ✓"
			if c.CIHalfWidth > t {
				met = " ✗"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %d | %.2f%s | %.0f ± %.0f | %s | %s |\n", c.Label(), c.PrimaryMetric, len(c.Observed), c.CIHalfWidth, met,
			c.CPUPerOpNs, (c.CPUPerOpCIHigh-c.CPUPerOpCILow)/2, pm(c.SysCPUPerOp), pm(c.MachineCPUPerOp))
	}
	fmt.Fprintln(w)
}

func pm(e stats.Estimate) string {
	if e.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f ± %.0f", e.Median, (e.High-e.Low)/2)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
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
		if other.BPFStats == matrix.DefaultStats || other.Arm != matrix.ArmObserver {
			continue
		}
		def := f.Find(strings.TrimSuffix(other.Key, "/bpf_stats="+string(other.BPFStats)))
		if def == nil || !def.OK() {
			continue
		}
		d := stats.EstimateDiff(def.OverheadSamples(), other.OverheadSamples(), def.Seed()) // other − default
		fmt.Fprintf(w, "BPF run-time statistics %s (%s): overhead %+.1f%%, against %+.1f%% with them off (the observer's default), difference %s.\n\n",
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

// scaleTable states, per observed cell of a run with held connections or
// several rates, what grows with the work: CPU per connection, one flush,
// memory and losses.
func scaleTable(w io.Writer, f *results.File) {
	var cells []results.Cell
	held := false
	for _, c := range okCells(f) {
		if c.SampleRate.Observed() && c.Flushes > 0 {
			cells = append(cells, c)
			held = held || c.HeldSockets > 0
		}
	}
	if !held {
		return
	}
	fmt.Fprintf(w, "## Cost as the work grows\n\n")
	fmt.Fprintf(w, "Sockets held open beside the load (`loadgen hold`, opened after the observer started, two flushes before the window) and the connection rate. ")
	fmt.Fprintf(w, "CPU per connection: load + observer CPU per connection, observed − baseline, median over rounds with a 95%% CI. ")
	fmt.Fprintf(w, "One flush: the observer's own `ebpf_net_obs_flush_cpu_seconds_total` (mean per flush) and `ebpf_net_obs_flush_duration_seconds` (wall p50/p99), over every observed run.\n\n")
	fmt.Fprintf(w, "| cell | open sockets | connections/s | CPU per connection added, µs | accounted, µs | flush CPU, ms | flush wall p50 / p99, ms | peak RSS | map memory | events lost |\n")
	fmt.Fprintf(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range cells {
		rate := c.OfferedRate
		if rate == 0 {
			rate = c.ObservedThroughput.Median
		}
		acc := "—"
		if c.Accounted.N > 0 {
			acc = fmt.Sprintf("%.2f [%.2f, %.2f]", c.Accounted.Median/1e3, c.Accounted.Low/1e3, c.Accounted.High/1e3)
		}
		fmt.Fprintf(w, "| %s | %d | %.0f | %.1f [%.1f, %.1f] | %s | %.1f | %.1f / %.1f | %.0f MiB | %.1f MiB | %.0f |\n",
			c.Label(), c.HeldSockets, rate, c.CPUPerOpNs/1e3, c.CPUPerOpCILow/1e3, c.CPUPerOpCIHigh/1e3, acc,
			c.FlushCPUNs/1e6, c.FlushP50Ns/1e6, c.FlushP99Ns/1e6,
			float64(c.AgentPeakRSSBytes)/(1<<20), float64(c.MapMemoryBytes)/(1<<20), c.EventsLost)
	}
	fmt.Fprintln(w)
}
