package observer

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/config"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/export/otlp"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/loader"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/metadata"
)

// Setup builds the observer with every optional part the configuration asks
// for (workload metadata, OTLP export).
func Setup(ctx context.Context, cfg config.Config, log *slog.Logger) (*Observer, error) {
	// Before anything else logs: a missing capability is one line.
	if err := loader.CheckCapabilities(); err != nil {
		return nil, err
	}
	var opts Options
	res, err := metadata.New(ctx, metadata.Options{
		CgroupRoot: cfg.CgroupPath, PodLogDir: cfg.PodLogDir, Kubeconfig: cfg.Kubeconfig, NodeName: cfg.NodeName,
	})
	if err != nil {
		if cfg.Kubeconfig != "" {
			return nil, fmt.Errorf("workload metadata: %w", err)
		}
		log.Warn("workload context off: container, pod and namespace labels stay empty", "err", err)
	} else {
		opts.Resolver = newWorkloads(res)
	}
	ob, err := New(cfg, log, opts)
	if err != nil {
		if res != nil {
			res.Close()
		}
		return nil, err
	}
	if res != nil {
		ob.AddCloser(res.Close)
	}
	if err := setupOTLP(ctx, ob, cfg, log); err != nil {
		ob.Close()
		return nil, err
	}
	return ob, nil
}

// otlpStopTimeout bounds the final push when the observer stops.
const otlpStopTimeout = 5 * time.Second

// setupOTLP starts the OTLP push when --otlp-endpoint is set.
func setupOTLP(ctx context.Context, ob *Observer, cfg config.Config, log *slog.Logger) error {
	if cfg.OTLPEndpoint == "" {
		return nil
	}
	node := cfg.NodeName
	if node == "" {
		node = os.Getenv("NODE_NAME") // set by the DaemonSet; the hostname is no node name
	}
	stop, err := otlp.Start(ctx, otlp.Options{
		Endpoint: cfg.OTLPEndpoint, Interval: cfg.OTLPInterval, Table: ob.Table,
		NodeName: node, Version: Version,
	}, log)
	if err != nil {
		return err
	}
	ob.AddCloser(func() error {
		c, cancel := context.WithTimeout(context.Background(), otlpStopTimeout)
		defer cancel()
		return stop(c)
	})
	return nil
}
