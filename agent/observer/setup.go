package observer

import (
	"context"
	"log/slog"
	"os"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/config"
)

// Setup builds the observer with every optional part the configuration asks
// for (workload metadata, OTLP export).
func Setup(ctx context.Context, cfg config.Config, log *slog.Logger) (*Observer, error) {
	if os.Geteuid() != 0 {
		log.Warn("not running as root: loading BPF needs CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_ADMIN")
	}
	return New(cfg, log, Options{})
}
