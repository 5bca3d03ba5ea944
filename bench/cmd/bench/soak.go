package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/soak"
)

// cmdSoak runs one observer under steady churn and fails when something
// in it grows or its byte counters drift (docs/bench.md, "Steady state").
func cmdSoak(args []string) error {
	fs := flag.NewFlagSet("bench soak", flag.ContinueOnError)
	cfg := soak.Config{Log: os.Stderr, Command: os.Args}
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Minute, "how long the churn runs")
	fs.IntVar(&cfg.Rate, "rate", 2000, "connections opened and closed per second")
	fs.IntVar(&cfg.Hold, "hold", 5000, "long-lived connections held open the whole run")
	fs.DurationVar(&cfg.Sample, "sample", 5*time.Second, "how often the observer is sampled")
	fs.StringVar(&cfg.Out, "out", "results/soak", "output directory")
	fs.StringVar(&cfg.ObserverBin, "observer-bin", "bin/ebpf-net-obs", "observer binary")
	fs.StringVar(&cfg.LoadgenBin, "loadgen-bin", "bin/loadgen", "loadgen binary")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	if cfg.Duration < time.Minute || cfg.Rate < 1 || cfg.Hold < 1 || cfg.Sample <= 0 {
		return fmt.Errorf("--duration must be at least 1m and --rate, --hold and --sample positive (e.g. --duration 30m --rate 2000 --hold 5000 --sample 5s)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	f, runErr := soak.Run(ctx, cfg)
	if err := soak.Save(f, cfg.Out); err != nil {
		return errors.Join(runErr, err)
	}
	fmt.Printf("soak: %s (%s/report.md)\n", f.Verdict, cfg.Out)
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	if !f.Pass {
		return exitError(1)
	}
	return nil
}
