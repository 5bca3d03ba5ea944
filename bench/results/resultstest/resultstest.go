// Package resultstest builds synthetic results for tests of the packages
// that read them (report, plot, compare, tune): cells with a known true
// overhead and noise, summarized exactly as a real run would be.
package resultstest

import (
	"math/rand/v2"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
)

// Spec describes one synthetic cell.
type Spec struct {
	Workload   string // crr-64, rr-64, stream-64k (mode is the prefix)
	Transport  string
	MapType    string
	SampleRate matrix.SampleRate
	BPFStats   matrix.Stats // "" = the default, off
	Arm        matrix.Arm
	Observer   string
	Overhead   float64 // true throughput overhead, percent
	Noise      float64 // relative noise of each run, e.g. 0.02
	Pairs      int
	// AddedNs is a known cost per operation in the accounting runs (an
	// injected cost, or a regression between two observers).
	AddedNs float64
}

// Cell returns a summarized cell drawn from spec with the given seed.
func Cell(s Spec, kernel string, seed uint64) results.Cell {
	rng := rand.New(rand.NewPCG(seed, 99))
	mode := s.Workload
	for i := range mode {
		if mode[i] == '-' {
			mode = mode[:i]
			break
		}
	}
	w := matrix.Workload{Name: s.Workload, Mode: mode, Size: 64, Concurrency: 4}
	if s.BPFStats == "" {
		s.BPFStats = matrix.DefaultStats
	}
	mc := matrix.Cell{Workload: w, Transport: s.Transport, MapType: s.MapType, SampleRate: s.SampleRate, BPFStats: s.BPFStats, Arm: s.Arm, Observer: s.Observer}
	if s.SampleRate == matrix.Off {
		mc.Transport, mc.MapType, mc.BPFStats = matrix.None, matrix.None, matrix.DefaultStats
	}
	c := results.Cell{Key: mc.Key(), Workload: w.Name, WorkloadSpec: w, Transport: mc.Transport, MapType: mc.MapType,
		SampleRate: s.SampleRate, BPFStats: mc.BPFStats, Arm: s.Arm, Observer: s.Observer, Kernel: kernel, Status: "ok",
		Start: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	sample := func(factor float64, observed bool, pair int) results.Sample {
		tput := 10000 * factor * (1 + s.Noise*rng.NormFloat64())
		lat := 1e9 / tput * 4
		sm := results.Sample{Pair: pair, Loadgen: results.Loadgen{Mode: mode, Ops: tput * 2, OpsPerSec: tput,
			ThroughputBps: tput * 64 * 8, Bytes: tput * 128,
			LatencyNs: results.Latency{P50: lat, P90: 1.5 * lat, P99: 2 * lat, P999: 3 * lat, Max: 5 * lat, Mean: lat}}}
		// CPU per operation: 150 µs, more by the overhead when observed
		sm.LoadCPUNs = int64(tput * 2 * 150e3 / factor * (1 + s.Noise*rng.NormFloat64()))
		sm.MachineBusyNs, sm.WindowNs = sm.LoadCPUNs*11/10, 2e9
		if observed && s.SampleRate != matrix.Off {
			runs := uint64(sm.Loadgen.Ops * 4)
			sm.Probe = &results.Probe{AgentCPUNs: int64(sm.Loadgen.Ops * 800 / float64(s.SampleRate)),
				AgentRestCPUNs: 2e6, RestNs: 500e6, // 0.4% of a CPU at rest
				AgentPeakRSSBytes: 30 << 20, MapMemlockBytes: 1 << 20, Scraped: true,
				Programs: []results.Program{{ID: 1, Name: "handle_state", RunTimeNs: runs * 300, RunCount: runs},
					{ID: 2, Name: "sockops", RunTimeNs: runs * 100, RunCount: runs}}}
			if !s.BPFStats.TimesPrograms() {
				sm.Probe.Programs = nil
			}
			// the accounting run: 1000 operations, set_state 10 runs of
			// ~300 ns each, plus the added cost
			acc := &results.Accounting{Ops: 1000, Programs: []results.Program{
				{ID: 1, Name: "set_state", RunTimeNs: uint64(10000 * 300 * (1 + s.Noise*rng.NormFloat64())), RunCount: 10000}}}
			if s.AddedNs > 0 {
				acc.Programs = append(acc.Programs, results.Program{ID: 3, Name: "inject_spin", RunTimeNs: uint64(1000 * s.AddedNs), RunCount: 10000})
			}
			sm.Accounting = acc
		}
		return sm
	}
	for i := 0; i < s.Pairs; i++ {
		drift := 1 + 0.05*rng.Float64()
		c.Baseline = append(c.Baseline, sample(drift, false, i))
		c.Observed = append(c.Observed, sample(drift*(1-s.Overhead/100), true, i))
	}
	c.Summarize()
	return c
}

// File returns results holding a cell per spec.
func File(kernel string, seed uint64, specs ...Spec) *results.File {
	f := &results.File{Meta: results.Meta{Kernel: kernel, Profile: "synthetic", Commit: "0000000", CPUs: 2,
		Start: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), GoVersion: "go1.26",
		Command: []string{"bin/bench", "run", "--profile", "synthetic"}}}
	for i, s := range specs {
		f.Cells = append(f.Cells, Cell(s, kernel, seed+uint64(i)))
	}
	f.Summarize()
	return f
}

// Curve is the quick profile's shape: the A/A cell, rates 1/10/100 with
// overheads o1/o10/o100 on ringbuf+hash, the other map types and perf at
// rate 1 (o1), and bpf_stats=on and sampled twins (only the on twin has
// BPF run times in its measured windows, as in real runs).
func Curve(o1, o10, o100, noise float64, pairs int) []Spec {
	base := Spec{Workload: "crr-64", Transport: "ringbuf", MapType: "hash", Noise: noise, Pairs: pairs}
	with := func(f func(*Spec)) Spec { s := base; f(&s); return s }
	return []Spec{
		with(func(s *Spec) { s.SampleRate = matrix.Off }),
		with(func(s *Spec) { s.SampleRate, s.Overhead = 1, o1 }),
		with(func(s *Spec) { s.SampleRate, s.Overhead = 10, o10 }),
		with(func(s *Spec) { s.SampleRate, s.Overhead = 100, o100 }),
		with(func(s *Spec) { s.SampleRate, s.Overhead, s.MapType = 1, o1, "lru_hash" }),
		with(func(s *Spec) { s.SampleRate, s.Overhead, s.Transport = 1, o1*1.3, "perf" }),
		with(func(s *Spec) { s.SampleRate, s.Overhead, s.BPFStats = 1, o1*1.4, matrix.StatsOn }),
		with(func(s *Spec) { s.SampleRate, s.Overhead, s.BPFStats = 1, o1*0.9, matrix.StatsSampled }),
		with(func(s *Spec) { s.SampleRate, s.Overhead, s.Workload = 1, o1/3, "rr-64" }),
	}
}
