package probe

import (
	"fmt"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/ebpf-net-obs/ebpf-net-obs/internal/bpfstats"
)

// StatsCost is what the kernel's BPF run-time statistics add to every
// program run on this machine.
type StatsCost struct {
	OffNsPerRun, OnNsPerRun, AddedNsPerRun float64
	Note                                   string
}

// MeasureStatsCost times an empty program with BPF_PROG_TEST_RUN, rounds
// with statistics off and on alternating, and keeps the median of each. Test
// runs take the same path as attached programs (the statistics static key
// wraps every invocation), without the noise of a network workload.
func MeasureStatsCost() (StatsCost, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "bench_empty", Type: ebpf.SocketFilter, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return StatsCost{}, fmt.Errorf("load test program: %w", err)
	}
	defer prog.Close()
	const repeat, rounds = 200_000, 7
	pkt := make([]byte, 64)
	var off, on []float64
	for i := 0; i < rounds; i++ {
		_, d, err := prog.Benchmark(pkt, repeat, nil)
		if err != nil {
			return StatsCost{}, fmt.Errorf("BPF_PROG_TEST_RUN: %w", err)
		}
		off = append(off, float64(d.Nanoseconds()))
		closer, err := bpfstats.Enable()
		if err != nil {
			return StatsCost{}, fmt.Errorf("enable BPF stats: %w", err)
		}
		_, d, err = prog.Benchmark(pkt, repeat, nil)
		closer.Close()
		if err != nil {
			return StatsCost{}, fmt.Errorf("BPF_PROG_TEST_RUN: %w", err)
		}
		on = append(on, float64(d.Nanoseconds()))
	}
	c := StatsCost{OffNsPerRun: mid(off), OnNsPerRun: mid(on)}
	c.AddedNsPerRun = c.OnNsPerRun - c.OffNsPerRun
	if bpfstats.Sysctl() == "1" {
		c.Note = "kernel.bpf_stats_enabled=1 system-wide: both rounds ran with statistics, the difference is meaningless"
	}
	return c, nil
}

func mid(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
}
