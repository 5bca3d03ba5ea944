package results

import (
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
	c.summarizeProbes()
}

func (c *Cell) summarizeProbes() {
	runTime := map[string]uint64{}
	runs := map[string]uint64{}
	var ops float64
	var cpu, restCPU, rest int64
	c.EventsLost, c.EventsSampledOut, c.AgentPeakRSSBytes, c.MapMemoryBytes = 0, 0, 0, 0
	for _, s := range c.Observed {
		ops += s.Loadgen.Ops
		p := s.Probe
		if p == nil {
			continue
		}
		cpu += p.AgentCPUNs
		restCPU += p.AgentRestCPUNs
		rest += p.RestNs
		for _, pr := range p.Programs {
			runTime[pr.Name] += pr.RunTimeNs
			runs[pr.Name] += pr.RunCount
		}
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
		if ops > 0 {
			c.RunsPerOp[name] = float64(n) / ops
		}
	}
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
