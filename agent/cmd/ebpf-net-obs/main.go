// Command ebpf-net-obs is the per-node observer: every TCP connection with
// its bytes, retransmits, RTT and owner, as Prometheus and OTLP metrics.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/config"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/observer"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg, err := config.Load(args, os.Stderr)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ebpf-net-obs: %v\n", err)
		return 2
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ob, err := observer.Setup(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ebpf-net-obs: %v\n", err)
		return 1
	}
	if err := ob.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "ebpf-net-obs: %v\n", err)
		return 1
	}
	log.Info("stopped; all programs detached")
	return 0
}
