package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
)

// WriteBenchstat writes every raw sample in the Go benchmark format, one
// line per run, so golang.org/x/perf/cmd/benchstat can read it:
//
//	benchstat -col /arm benchstat.txt          # observed vs baseline in one run
//	benchstat old/benchstat.txt new/benchstat.txt
//
// config, when not empty, is written as a "key: value" line first (e.g.
// "run: old"), which lets one stream carry two runs
// (benchstat -col run -ignore commit,kernel,profile).
func WriteBenchstat(w io.Writer, f *results.File, config string) error {
	var b strings.Builder
	if config != "" {
		fmt.Fprintln(&b, config)
	}
	fmt.Fprintf(&b, "goos: linux\nkernel: %s\ncommit: %s\nprofile: %s\ncpus: %d\n", f.Meta.Kernel, f.Meta.Commit, f.Meta.Profile, f.Meta.CPUs)
	for _, c := range f.Cells {
		if !c.OK() {
			continue
		}
		name := fmt.Sprintf("BenchmarkOverhead/workload=%s/transport=%s/map=%s/rate=%s", c.Workload, c.Transport, c.MapType, c.SampleRate)
		if c.BPFStats != matrix.DefaultStats {
			name += "/bpf_stats=" + string(c.BPFStats)
		}
		for _, arm := range []struct {
			name    string
			samples []results.Sample
		}{{"baseline", c.Baseline}, {"observed", c.Observed}} {
			for _, s := range arm.samples {
				l := s.Loadgen
				unit := "ops/s"
				if c.ThroughputMetric == "throughput_bps" {
					unit = "bits/s"
				}
				fmt.Fprintf(&b, "%s/arm=%s 1 %.0f %s %.0f p50-ns %.0f p99-ns %.0f p99.9-ns\n", name, arm.name,
					results.Throughput(c.WorkloadSpec.Mode, l), unit, l.LatencyNs.P50, l.LatencyNs.P99, l.LatencyNs.P999)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
