package results

import (
	"cmp"
	"sort"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/stats"
)

// Throughput is the figure of merit of a sample: bytes/s for stream, ops/s otherwise.
func Throughput(mode string, l Loadgen) float64 {
	if mode == "stream" {
		return l.ThroughputBps
	}
	return l.OpsPerSec
}

// ThroughputSeries returns a cell's baseline and observed throughputs in pair order.
func (c *Cell) ThroughputSeries() (base, obs []float64) {
	for _, s := range c.Baseline {
		base = append(base, Throughput(c.WorkloadSpec.Mode, s.Loadgen))
	}
	for _, s := range c.Observed {
		obs = append(obs, Throughput(c.WorkloadSpec.Mode, s.Loadgen))
	}
	return base, obs
}

// OverheadSamples are the per-pair throughput overheads in percent.
func (c *Cell) OverheadSamples() []float64 {
	base, obs := c.ThroughputSeries()
	return stats.ThroughputOverheadPct(base, obs)
}

// Seed is the bootstrap seed of a cell: fixed per key, so the same raw
// samples always give the same interval.
func (c *Cell) Seed() uint64 {
	h := uint64(stats.Seed)
	for _, b := range []byte(c.Key) {
		h = h*1099511628211 ^ uint64(b)
	}
	return h
}

// CPUPerOp is a sample's CPU time per operation, ns: the load's and the
// observer's (0 where no observer ran).
func (s *Sample) CPUPerOp() float64 { return s.perOpWithObserver(s.LoadCPUNs) }

// SysCPUPerOp is a sample's kernel CPU time of the load per operation plus
// the observer's CPU, ns.
func (s *Sample) SysCPUPerOp() float64 { return s.perOpWithObserver(s.LoadSysNs) }

// perOpWithObserver is (load + the observer's CPU) per operation; 0 when
// the load's time was not measured.
func (s *Sample) perOpWithObserver(loadNs int64) float64 {
	if s.Loadgen.Ops <= 0 || loadNs <= 0 {
		return 0
	}
	if s.Probe != nil {
		loadNs += s.Probe.AgentCPUNs
	}
	return float64(loadNs) / s.Loadgen.Ops
}

// MachineCPUPerOp is the machine's busy time per operation, ns.
func (s *Sample) MachineCPUPerOp() float64 {
	if s.Loadgen.Ops <= 0 || s.MachineBusyNs <= 0 {
		return 0
	}
	return float64(s.MachineBusyNs) / s.Loadgen.Ops
}

// series applies get to the baseline and observed samples in pair order,
// leaving out pairs where either side has no value.
func (c *Cell) series(get func(*Sample) float64) (base, obs []float64) {
	n := min(len(c.Baseline), len(c.Observed))
	for i := 0; i < n; i++ {
		b, o := get(&c.Baseline[i]), get(&c.Observed[i])
		if b > 0 && o > 0 {
			base, obs = append(base, b), append(obs, o)
		}
	}
	return base, obs
}

// CPUPerOpAdded is, per pair, the CPU time per operation the arm adds to
// its baseline (ns).
func (c *Cell) CPUPerOpAdded() []float64 {
	base, obs := c.series((*Sample).CPUPerOp)
	return diffs(base, obs)
}

// AccountedSeries is, per observed sample, the accounted cost (see
// accounted), in round order.
func (c *Cell) AccountedSeries() []float64 { return InRoundOrder(c.PerPair(MetricAccounted)) }

// accounted is one sample's accounted cost per operation: its programs'
// net run time per operation (accounting run), the observer's CPU per
// operation (measured window) and the cell's dispatch cost; ok is false
// when the sample has no accounting run.
func (c *Cell) accounted(s *Sample) (v float64, ok bool) {
	a := s.Accounting
	if a == nil || a.Ops <= 0 || s.Loadgen.Ops <= 0 {
		return 0, false
	}
	v = c.netNs(a.Programs)/a.Ops + c.DispatchPerOpNs
	if s.Probe != nil {
		v += float64(s.Probe.AgentCPUNs) / s.Loadgen.Ops
	}
	return v, true
}

// netNs is the programs' run time less, run for run, the floor's empty
// program on the same hook (the statistics' clock reads and the empty
// run), where the run has a floor cell.
func (c *Cell) netNs(progs []Program) float64 {
	var t float64
	for _, p := range progs {
		t += float64(p.RunTimeNs) - float64(p.RunCount)*c.floorNs[p.Name]
	}
	return t
}

// InRoundOrder is a per-pair map's values in round order.
func InRoundOrder(m map[int]float64) []float64 {
	rounds := make([]int, 0, len(m))
	for r := range m {
		rounds = append(rounds, r)
	}
	sort.Ints(rounds)
	out := make([]float64, len(rounds))
	for i, r := range rounds {
		out[i] = m[r]
	}
	return out
}

func diffs(base, obs []float64) []float64 {
	out := make([]float64, len(base))
	for i := range base {
		out[i] = obs[i] - base[i]
	}
	return out
}

// PrimarySamples are the per-pair values of the cell's primary metric.
func (c *Cell) PrimarySamples() []float64 {
	if c.WorkloadSpec.OpenLoop() {
		base, obs := c.series((*Sample).CPUPerOp)
		return stats.LatencyOverheadPct(base, obs) // 100·(obs/base − 1): more CPU = positive
	}
	return c.OverheadSamples()
}

// Summarize fills every cell's statistics, then what needs more than one
// cell: the dispatch cost each workload's floor cell measured, and with it
// the accounted and unaccounted cost of that workload's cells.
//
// The dispatch cost's own interval is kept apart (DispatchCI): the
// accounted interval is that of the parts measured per pair, so that it
// shows what the gate, which compares cells on the same hooks, can resolve.
func (f *File) Summarize() {
	floors := map[string]*Cell{}
	var anyFloor *Cell
	for i := range f.Cells {
		c := &f.Cells[i]
		c.floorNs = nil
		c.Summarize()
		if c.Arm == matrix.ArmFloor && len(c.Observed) > 0 {
			floors[c.Workload], anyFloor = c, c
		}
	}
	for i := range f.Cells {
		c := &f.Cells[i]
		if !c.SampleRate.Observed() {
			continue
		}
		c.DispatchPerOpNs, c.DispatchCI = 0, stats.Estimate{}
		// the floor's time per run is the statistics' own, whatever the
		// workload; its cost per operation is the workload's own
		fl := floors[c.Workload]
		if ref := cmp.Or(fl, anyFloor); ref != nil {
			c.floorNs = map[string]float64{}
			for prog, floorProg := range f.Meta.FloorOf {
				c.floorNs[prog] = ref.BPFNsPerRun[floorProg]
			}
		}
		if fl != nil {
			// an interval that reaches below zero leaves the dispatch
			// unresolved, not negative: it counts as 0 in the sum
			c.DispatchPerOpNs = max(0, fl.CPUPerOpNs)
			c.DispatchCI = stats.Estimate{Median: fl.CPUPerOpNs, Low: fl.CPUPerOpCILow, High: fl.CPUPerOpCIHigh, N: len(fl.Observed)}
		}
		c.summarizeAccounted()
	}
}

func (c *Cell) summarizeAccounted() {
	acc := c.AccountedSeries()
	c.Accounted = stats.EstimateMedian(acc, c.Seed())
	c.AccountedPerOpNs = c.Accounted.Median
	c.BPFNetPerOpNs = 0
	var net, ops float64
	for _, s := range c.Observed {
		if s.Accounting != nil {
			net, ops = net+c.netNs(s.Accounting.Programs), ops+s.Accounting.Ops
		}
	}
	if ops > 0 {
		c.BPFNetPerOpNs = net / ops
	}
	c.UnaccountedPerOpNs = 0
	if len(acc) > 0 && c.CPUPerOpNs != 0 {
		c.UnaccountedPerOpNs = c.CPUPerOpNs - c.AccountedPerOpNs
	}
}

// Summarize fills the cell's statistics from its raw samples.
func (c *Cell) Summarize() {
	c.ThroughputMetric = "ops_per_sec"
	if c.WorkloadSpec.Mode == "stream" {
		c.ThroughputMetric = "throughput_bps"
	}
	base, obs := c.ThroughputSeries()
	c.BaselineThroughput = stats.Summarize(base)
	c.ObservedThroughput = stats.Summarize(obs)
	e := stats.EstimateMedian(stats.ThroughputOverheadPct(base, obs), c.Seed())
	c.ThroughputOverheadPct, c.CILow, c.CIHigh, c.Significant = e.Median, e.Low, e.High, e.Significant
	c.PValue = stats.MannWhitneyP(base, obs)

	c.LatencyOverheadPct = map[string]stats.Estimate{}
	for name, get := range map[string]func(Latency) float64{
		"p50": func(l Latency) float64 { return l.P50 }, "p90": func(l Latency) float64 { return l.P90 },
		"p99": func(l Latency) float64 { return l.P99 }, "p999": func(l Latency) float64 { return l.P999 },
	} {
		var b, o []float64
		for _, s := range c.Baseline {
			b = append(b, get(s.Loadgen.LatencyNs))
		}
		for _, s := range c.Observed {
			o = append(o, get(s.Loadgen.LatencyNs))
		}
		c.LatencyOverheadPct[name] = stats.EstimateMedian(stats.LatencyOverheadPct(b, o), c.Seed())
	}
	c.OfferedRate = float64(c.WorkloadSpec.Rate)

	cb, co := c.series((*Sample).CPUPerOp)
	e = stats.EstimateMedian(diffs(cb, co), c.Seed())
	c.CPUPerOpNs, c.CPUPerOpCILow, c.CPUPerOpCIHigh = e.Median, e.Low, e.High
	c.BaselineCPUPerOpNs = stats.Median(cb)
	if len(cb) == 0 {
		c.BaselineCPUPerOpNs = 0
	}
	c.CPUOverheadPct = stats.EstimateMedian(stats.LatencyOverheadPct(cb, co), c.Seed())
	mb, mo := c.series((*Sample).MachineCPUPerOp)
	c.MachineCPUPerOp = stats.EstimateMedian(diffs(mb, mo), c.Seed())
	sb, so := c.series((*Sample).SysCPUPerOp)
	c.SysCPUPerOp = stats.EstimateMedian(diffs(sb, so), c.Seed())

	c.PrimaryMetric = "throughput_overhead_pct"
	primary := CellEstimate(c)
	if c.WorkloadSpec.OpenLoop() {
		c.PrimaryMetric, primary = "cpu_overhead_pct", c.CPUOverheadPct
	}
	c.CIHalfWidth = (primary.High - primary.Low) / 2
	c.summarizeProbes()
	c.summarizeAccounted()
}

// CellEstimate is the cell's throughput overhead as an Estimate.
func CellEstimate(c *Cell) stats.Estimate {
	return stats.Estimate{Median: c.ThroughputOverheadPct, Low: c.CILow, High: c.CIHigh, Significant: c.Significant, N: len(c.Observed)}
}

// Primary is the cell's primary metric as an Estimate (see PrimaryMetric).
func (c *Cell) Primary() stats.Estimate {
	if c.PrimaryMetric == "cpu_overhead_pct" {
		return c.CPUOverheadPct
	}
	return CellEstimate(c)
}

func (c *Cell) summarizeProbes() {
	c.summarizeFlushes()
	runTime := map[string]uint64{}
	runs := map[string]uint64{}
	var ops float64
	var cpu, restCPU, rest int64
	c.EventsLost, c.EventsSampledOut, c.AgentPeakRSSBytes, c.MapMemoryBytes = 0, 0, 0, 0
	var progOps float64
	for _, s := range c.Observed {
		ops += s.Loadgen.Ops
		// the programs are timed in the accounting run where there is one,
		// else in the measured window (statistics held on all along)
		if a := s.Accounting; a != nil {
			progOps += a.Ops
			for _, pr := range a.Programs {
				runTime[pr.Name] += pr.RunTimeNs
				runs[pr.Name] += pr.RunCount
			}
		} else if s.Probe != nil && len(s.Probe.Programs) > 0 {
			progOps += s.Loadgen.Ops
			for _, pr := range s.Probe.Programs {
				runTime[pr.Name] += pr.RunTimeNs
				runs[pr.Name] += pr.RunCount
			}
		}
		p := s.Probe
		if p == nil {
			continue
		}
		cpu += p.AgentCPUNs
		restCPU += p.AgentRestCPUNs
		rest += p.RestNs
		c.EventsLost += p.EventsLost
		c.EventsSampledOut += p.EventsSampledOut
		c.AgentPeakRSSBytes = max(c.AgentPeakRSSBytes, p.AgentPeakRSSBytes)
		c.MapMemoryBytes = max(c.MapMemoryBytes, p.MapMemlockBytes)
		if p.MapEntries != nil {
			c.MapEntries, c.MapCapacity = p.MapEntries, p.MapCapacity
		}
	}
	c.BPFNsPerRun = map[string]float64{}
	c.RunsPerOp = map[string]float64{}
	for name, n := range runs {
		if n > 0 {
			c.BPFNsPerRun[name] = float64(runTime[name]) / float64(n)
		}
		if progOps > 0 {
			c.RunsPerOp[name] = float64(n) / progOps
		}
	}
	c.BPFPerOpNs = c.BPFNsPerOp()
	c.AgentCPUPerOpNs = 0
	if ops > 0 {
		c.AgentCPUPerOpNs = float64(cpu) / ops
	}
	c.AgentRestCPUShare = 0
	if rest > 0 {
		c.AgentRestCPUShare = float64(restCPU) / float64(rest)
	}
}

// BPFNsPerOp is the kernel-side cost per loadgen operation, all programs together.
func (c *Cell) BPFNsPerOp() float64 {
	var t float64
	for name, ns := range c.BPFNsPerRun {
		t += ns * c.RunsPerOp[name]
	}
	return t
}

// Metric names a per-pair figure of a cell, as results.json and the gate
// call it.
type Metric string

const (
	// MetricAccounted is BPF run time + observer CPU + dispatch per
	// operation, ns: the most precise figure, and the gate's first choice.
	MetricAccounted Metric = "accounted_per_op_ns"
	// MetricCPU is the CPU time per operation the arm adds to its round's
	// baseline, ns, end to end.
	MetricCPU Metric = "cpu_per_op_ns"
	// MetricThroughput is 100·(1 − observed/baseline) throughput, points.
	MetricThroughput Metric = "throughput_overhead_pct"
)

// Unit is how the metric's values read.
func (m Metric) Unit() string {
	if m == MetricThroughput {
		return "pct"
	}
	return "ns/op"
}

// PerPair is the metric's value in each round the cell was measured in,
// by round.
func (c *Cell) PerPair(m Metric) map[int]float64 {
	out := map[int]float64{}
	n := min(len(c.Baseline), len(c.Observed))
	for i := 0; i < n; i++ {
		b, o := &c.Baseline[i], &c.Observed[i]
		switch m {
		case MetricAccounted:
			if v, ok := c.accounted(o); ok {
				out[o.Pair] = v
			}
		case MetricCPU:
			if bv, ov := b.CPUPerOp(), o.CPUPerOp(); bv > 0 && ov > 0 {
				out[o.Pair] = ov - bv
			}
		case MetricThroughput:
			if bv := Throughput(c.WorkloadSpec.Mode, b.Loadgen); bv > 0 {
				out[o.Pair] = 100 * (1 - Throughput(c.WorkloadSpec.Mode, o.Loadgen)/bv)
			}
		}
	}
	return out
}

// PairedDiff is, for every round both cells were measured in, the metric
// of b minus that of a.
func PairedDiff(a, b *Cell, m Metric) []float64 {
	pa, pb := a.PerPair(m), b.PerPair(m)
	var rounds []int
	for r := range pb {
		if _, ok := pa[r]; ok {
			rounds = append(rounds, r)
		}
	}
	sort.Ints(rounds)
	out := make([]float64, len(rounds))
	for i, r := range rounds {
		out[i] = pb[r] - pa[r]
	}
	return out
}
