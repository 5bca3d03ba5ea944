// Package bpfstats is the kernel's switch for BPF run-time statistics, as
// the observer and bench both turn it: BPF_ENABLE_STATS, or the sysctl.
package bpfstats

import (
	"io"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Enable turns the statistics on until the closer is closed (the kernel
// counts holders; 5.8+, CAP_SYS_ADMIN).
func Enable() (io.Closer, error) {
	return ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
}

// Sysctl reads kernel.bpf_stats_enabled ("0", "1", or "" when unreadable).
// A 1 there means some process enabled statistics globally.
func Sysctl() string {
	data, err := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}
