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
	"syscall"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/compare"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/report"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/runner"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/tune"
)

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("bench run", flag.ContinueOnError)
	profile := fs.String("profile", "quick", "profile: smoke, quick, full, sampling, or a path to a .yaml file")
	out := fs.String("out", "results/latest", "output directory")
	resume := fs.Bool("resume", false, "keep the cells already measured in --out and run the rest")
	observerBin := fs.String("observer-bin", "bin/ebpf-net-obs", "observer binary, run with the cell's flags")
	observerCmd := fs.String("observer-cmd", "", "measure this shell command instead (placeholders {transport} {map_type} {sample_rate} {bpf_stats} {listen})")
	loadgenBin := fs.String("loadgen-bin", "bin/loadgen", "loadgen binary")
	pairs := fs.Int("pairs", 0, "override the profile's pairs per cell")
	duration := fs.Duration("duration", 0, "override the profile's measured duration per run")
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	begun := time.Now()
	f, runErr := runner.Run(ctx, runner.Config{
		Profile: p, OutDir: *out, LoadgenBin: *loadgenBin, Resume: *resume, Log: os.Stderr,
		Observer: runner.Observer{Bin: *observerBin, Cmd: *observerCmd}, Command: os.Args,
	})
	if f == nil {
		return runErr
	}
	if err := report.Write(f, *out); err != nil {
		return errors.Join(runErr, fmt.Errorf("write report: %w", err))
	}
	fmt.Fprintf(os.Stderr, "bench: %d cells in %s; wrote %s\n", len(f.Cells), time.Since(begun).Round(time.Second),
		filepath.Join(*out, "report.md"))
	return runErr
}

func cmdReport(args []string) error {
	fs := flag.NewFlagSet("bench report", flag.ContinueOnError)
	kernels := fs.Bool("kernels", false, "compare results from several kernels (DIRs, default results/kernels/*/bench)")
	out := fs.String("out", "", "output directory (default: DIR itself; results/kernels for --kernels)")
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
	if *out == "" {
		*out = dir
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
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
	threshold := fs.Float64("threshold", 2, "percentage points of overhead growth tolerated")
	format := fs.String("format", "table", "table, or benchstat (Go benchmark format of both runs, for `benchstat -col run -ignore commit,kernel,profile`)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		fmt.Fprintln(os.Stderr, "usage: bench compare OLD NEW [--threshold PCT] [--format table|benchstat]")
		return errUsage
	}
	old, err := results.Load(pos[0])
	if err != nil {
		return err
	}
	cur, err := results.Load(pos[1])
	if err != nil {
		return err
	}
	switch *format {
	case "benchstat":
		if err := report.WriteBenchstat(os.Stdout, old, "run: old"); err != nil {
			return err
		}
		return report.WriteBenchstat(os.Stdout, cur, "run: new")
	case "table":
	default:
		return fmt.Errorf("unknown --format %q (want table or benchstat)", *format)
	}
	rows := compare.Cells(old, cur, *threshold)
	compare.Print(os.Stdout, rows, *threshold)
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
