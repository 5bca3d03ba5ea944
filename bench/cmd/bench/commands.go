package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/compare"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/fidelity"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/report"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/runner"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/tune"
)

// observerFlags collects repeated --observer NAME=BIN values.
type observerFlags []runner.Observer

func (o *observerFlags) String() string { return "" }

func (o *observerFlags) Set(v string) error {
	ob, err := runner.ParseObserver(v)
	if err != nil {
		return err
	}
	for _, have := range *o {
		if have.Name == ob.Name {
			return fmt.Errorf("--observer %s given twice", ob.Name)
		}
	}
	*o = append(*o, ob)
	return nil
}

// injectFlags collects repeated --inject NAME=NS values.
type injectFlags map[string]float64

func (f *injectFlags) String() string { return "" }

func (f *injectFlags) Set(v string) error {
	name, num, ok := strings.Cut(v, "=")
	ns, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || ns <= 0 || ns > 50000 {
		return fmt.Errorf("--inject %q: want NAME=NS with NS in (0, 50000] ns per connect, e.g. new=500", v)
	}
	if *f == nil {
		*f = injectFlags{}
	}
	(*f)[name] = ns
	return nil
}

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("bench run", flag.ContinueOnError)
	profile := fs.String("profile", "quick", "profile: smoke, quick, full, sampling, target, or a path to a .yaml file")
	out := fs.String("out", "results/latest", "output directory")
	resume := fs.Bool("resume", false, "keep the rounds already measured in --out and run the rest")
	observerBin := fs.String("observer-bin", "bin/ebpf-net-obs", "observer binary, run with the cell's flags")
	observerCmd := fs.String("observer-cmd", "", "measure this shell command instead (placeholders {transport} {map_type} {sample_rate} {bpf_stats} {listen})")
	var observers observerFlags
	fs.Var(&observers, "observer", "NAME=BIN: measure this observer binary too, side by side in every round (repeatable; replaces --observer-bin)")
	var injects injectFlags
	fs.Var(&injects, "inject", "NAME=NS: observer NAME's arms all carry NS ns of calibrated busy work per connect() (a known regression, to check the gate)")
	loadgenBin := fs.String("loadgen-bin", "bin/loadgen", "loadgen binary")
	pairs := fs.Int("pairs", 0, "override the profile's pairs (rounds) per cell")
	duration := fs.Duration("duration", 0, "override the profile's measured duration per run")
	ciTarget := fs.Float64("ci-target", 0, "add rounds until every cell's 95% interval is at most this many points on each side (or --max-time is spent)")
	maxTime := fs.Duration("max-time", 0, "time budget of the whole run with --ci-target (e.g. 40m)")
	maxOverhead := fs.Float64("max-overhead", -1, "exit 1 when a cell's interval upper bound exceeds this overhead, percent")
	thPct := fs.Float64("threshold", 2, "the gate's threshold for the measured power: points of throughput")
	thNs := fs.Float64("threshold-ns", 200, "the gate's threshold for the measured power: ns per operation")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	p, err := matrix.Load(*profile)
	if err != nil {
		return err
	}
	if *pairs > 0 {
		p.Run.Pairs = *pairs
	}
	if *duration > 0 {
		p.Run.Duration = matrix.Duration(*duration)
	}
	if *ciTarget < 0 || (*maxTime > 0 && *ciTarget == 0) {
		return fmt.Errorf("--max-time is the budget of --ci-target: give --ci-target PTS (> 0) with it")
	}
	if len(observers) > 0 && *observerCmd != "" {
		return fmt.Errorf("--observer and --observer-cmd exclude each other: measure binaries with --observer NAME=BIN")
	}
	if len(observers) == 0 {
		observers = observerFlags{{Bin: *observerBin, Cmd: *observerCmd}}
	}
	for name, ns := range injects {
		i := slices.IndexFunc(observers, func(o runner.Observer) bool { return o.Name == name })
		if i < 0 || observers[i].External() {
			return fmt.Errorf("--inject %s: no --observer %s=BIN to add it to", name, name)
		}
		observers[i].InjectNs = ns
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	begun := time.Now()
	f, runErr := runner.Run(ctx, runner.Config{
		Profile: p, OutDir: *out, LoadgenBin: *loadgenBin, Resume: *resume, Log: os.Stderr,
		Observers: observers, Command: os.Args, CITarget: *ciTarget, MaxTime: *maxTime,
	})
	if f == nil {
		return runErr
	}
	if runErr == nil && p.Fidelity != nil && !observers[0].External() {
		fmt.Fprintf(os.Stderr, "bench: fidelity: rates %v against rate 1 on %s, side by side\n", p.Fidelity.Rates, p.Fidelity.Workload)
		fid, err := fidelity.Measure(ctx, fidelity.Options{ObserverBin: observers[0].Bin, LoadgenBin: *loadgenBin,
			Workload: p.Workloads[p.Fidelity.Workload], Rates: p.Fidelity.Rates, Duration: p.Fidelity.Duration.D(), Log: os.Stderr})
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: fidelity not measured: %v\n", err)
		}
		f.Meta.Fidelity = fid
	}
	f.Meta.Power = compare.Power(f, compare.Thresholds{Pct: *thPct, Ns: *thNs})
	if err := results.Save(*out, f); err != nil {
		return errors.Join(runErr, err)
	}
	if err := report.Write(f, *out); err != nil {
		return errors.Join(runErr, fmt.Errorf("write report: %w", err))
	}
	fmt.Fprintf(os.Stderr, "bench: %d cells in %s; wrote %s\n", len(f.Cells), time.Since(begun).Round(time.Second),
		filepath.Join(*out, "report.md"))
	if runErr != nil {
		return runErr
	}
	if *maxOverhead >= 0 {
		if over := overBudget(f, *maxOverhead); len(over) > 0 {
			fmt.Fprintf(os.Stderr, "bench: %d cell(s) over --max-overhead %.1f%% by their interval's upper bound:\n  %s\n", len(over), *maxOverhead, strings.Join(over, "\n  "))
			return exitError(1)
		}
	}
	return nil
}

// overBudget lists the observer cells whose primary interval reaches past
// max percent.
func overBudget(f *results.File, max float64) []string {
	var out []string
	for i := range f.Cells {
		c := &f.Cells[i]
		if !c.OK() || !c.SampleRate.Observed() || c.Arm != matrix.ArmObserver {
			continue
		}
		if e := c.Primary(); e.High > max {
			out = append(out, fmt.Sprintf("%s: %s %+.1f%% [%+.1f, %+.1f]", c.Label(), c.PrimaryMetric, e.Median, e.Low, e.High))
		}
	}
	return out
}

func cmdReport(args []string) error {
	fs := flag.NewFlagSet("bench report", flag.ContinueOnError)
	kernels := fs.Bool("kernels", false, "compare results from several kernels (DIRs, default results/kernels/*/bench)")
	out := fs.String("out", "", "output directory (default: DIR itself; results/kernels for --kernels)")
	thPct := fs.Float64("threshold", 2, "the gate's threshold for the power table: points of throughput")
	thNs := fs.Float64("threshold-ns", 200, "the gate's threshold for the power table: ns per operation")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *kernels {
		return kernelReport(pos, *out)
	}
	dir := "results/latest"
	if len(pos) > 1 {
		return fmt.Errorf("one results directory at a time (or --kernels DIR...)")
	} else if len(pos) == 1 {
		dir = pos[0]
	}
	f, err := results.Load(dir)
	if err != nil {
		return err
	}
	// every figure is recomputed from the raw samples, as this bench
	// computes them
	f.Summarize()
	f.Meta.Power = compare.Power(f, compare.Thresholds{Pct: *thPct, Ns: *thNs})
	if *out == "" {
		*out = dir
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if err := results.Save(*out, f); err != nil {
		return err
	}
	if err := report.Write(f, *out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: wrote %s\n", filepath.Join(*out, "report.md"))
	return nil
}

func kernelReport(dirs []string, out string) error {
	if len(dirs) == 0 {
		found, err := report.KernelResults("results/kernels")
		if err != nil {
			return err
		}
		dirs = found
	}
	if out == "" {
		out = "results/kernels"
	}
	var files []*results.File
	for _, d := range dirs {
		f, err := results.Load(d)
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	if err := report.WriteKernels(files, out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: compared %d kernels; wrote %s\n", len(files), filepath.Join(out, "kernels.md"))
	return nil
}

func cmdCompare(args []string) error {
	fs := flag.NewFlagSet("bench compare", flag.ContinueOnError)
	threshold := fs.Float64("threshold", 2, "points of throughput overhead growth tolerated")
	thresholdNs := fs.Float64("threshold-ns", 200, "ns per operation of cost growth tolerated")
	oldName := fs.String("old", "", "with one DIR: the observer (--observer NAME) to compare against")
	newName := fs.String("new", "", "with one DIR: the observer to judge")
	allowBiased := fs.Bool("allow-biased", false, "decide even when an A/A cell shows the instrument biased")
	format := fs.String("format", "table", "table, or benchstat (Go benchmark format of both runs, for `benchstat -col run -ignore commit,kernel,profile`)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	th := compare.Thresholds{Pct: *threshold, Ns: *thresholdNs}
	usage := "usage: bench compare OLD NEW [--threshold PCT] [--threshold-ns NS] [--format table|benchstat]\n       bench compare DIR --old NAME --new NAME (two observers of one run)"
	var files []*results.File
	for _, p := range pos {
		f, err := results.Load(p)
		if err != nil {
			return err
		}
		if biased := compare.Biased(f); len(biased) > 0 && !*allowBiased {
			return fmt.Errorf("%s: the A/A check shows the instrument biased (%s): no decision from this run; measure again on a quieter machine, or pass --allow-biased", p, strings.Join(biased, "; "))
		}
		files = append(files, f)
	}
	var rows []compare.Row
	switch {
	case len(pos) == 1 && *oldName != "" && *newName != "":
		if rows, err = compare.Observers(files[0], *oldName, *newName, th); err != nil {
			return err
		}
	case len(pos) == 2 && *oldName == "" && *newName == "":
		switch *format {
		case "benchstat":
			if err := report.WriteBenchstat(os.Stdout, files[0], "run: old"); err != nil {
				return err
			}
			return report.WriteBenchstat(os.Stdout, files[1], "run: new")
		case "table":
		default:
			return fmt.Errorf("unknown --format %q (want table or benchstat)", *format)
		}
		rows = compare.Cells(files[0], files[1], th)
	default:
		fmt.Fprintln(os.Stderr, usage)
		return errUsage
	}
	compare.Print(os.Stdout, rows, th)
	if compare.Regressed(rows) {
		return exitError(1)
	}
	return nil
}

func cmdTune(args []string) error {
	fs := flag.NewFlagSet("bench tune", flag.ContinueOnError)
	budget := fs.Float64("budget", -1, "throughput overhead budget, percent (required)")
	dir := fs.String("results", "results/latest", "results directory")
	workload := fs.String("workload", "crr", "workload name or mode to tune for")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	if *budget < 0 {
		fmt.Fprintln(os.Stderr, "usage: bench tune --budget PCT [--results DIR] [--workload crr]")
		return errUsage
	}
	f, err := results.Load(*dir)
	if err != nil {
		return err
	}
	if biased := compare.Biased(f); len(biased) > 0 {
		return fmt.Errorf("%s: the A/A check shows the instrument biased (%s): no recommendation from this run; measure again", *dir, strings.Join(biased, "; "))
	}
	ch, err := tune.Choose(f, *budget, *workload)
	if err != nil {
		return err
	}
	tune.Print(os.Stdout, ch, tune.Cheapest(f, *workload))
	if ch.Best == nil {
		return exitError(1)
	}
	return nil
}

func listProfiles(w io.Writer) error {
	for _, name := range matrix.Names() {
		p, err := matrix.Load(name)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%-6s %2d cells x %d pairs, %s per run: %s\n", name, len(p.Cells()), p.Run.Pairs,
			(p.Run.Settle.D() + p.Run.Warmup.D() + p.Run.Duration.D()).String(), p.Description)
	}
	return nil
}
