// Package results is the schema of results.json: what a bench run measured,
// raw samples included so every figure can be recomputed, and how it is
// written (atomically, after every cell) and read back.
package results

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/stats"
)

// FileName is the name of the results file inside an output directory.
const FileName = "results.json"

// File is results.json.
type File struct {
	Meta  Meta   `json:"meta"`
	Cells []Cell `json:"cells"`
}

// Meta describes the run and the machine.
type Meta struct {
	Kernel         string             `json:"kernel"`
	Profile        string             `json:"profile"`
	Commit         string             `json:"commit"`
	CPUs           int                `json:"cpus"`
	CPUModel       string             `json:"cpu_model,omitempty"`
	Start          time.Time          `json:"start"`
	End            time.Time          `json:"end,omitempty"`
	Resumed        []time.Time        `json:"resumed,omitempty"`
	GoVersion      string             `json:"go_version"`
	Command        []string           `json:"command"`
	Hostname       string             `json:"hostname,omitempty"`
	LoadAvgAtStart string             `json:"loadavg_at_start,omitempty"`
	ForeignBPFProg int                `json:"foreign_bpf_programs_at_start"` // loaded by others before we began
	Observer       string             `json:"observer"`                      // binary or command measured
	Loadgen        string             `json:"loadgen"`
	Run            matrix.RunSettings `json:"run"`
	BPFStatsCost   *StatsCost         `json:"bpf_stats_cost,omitempty"`
	// InjectNsPerIteration is the injected loop's calibrated cost.
	InjectNsPerIteration float64 `json:"inject_ns_per_iteration,omitempty"`
	// FloorOf maps each observer program to the floor program on its hook.
	FloorOf map[string]string `json:"floor_of,omitempty"`
	// CITarget is bench run --ci-target: points on each side; 0 = none.
	CITarget float64 `json:"ci_target,omitempty"`
	// Saturation is each open-loop workload's closed-loop rate (ops/s),
	// measured without an observer at the start of the run; its cells offer
	// a fraction of it.
	Saturation map[string]float64 `json:"saturation,omitempty"`
	// Fidelity is what each sample rate costs in accuracy, measured on the
	// same traffic as rate 1 (two observers side by side).
	Fidelity []Fidelity `json:"fidelity,omitempty"`
	// Power is the gate's measured sensitivity and false-alarm rate, per
	// metric it decides on.
	Power []Power `json:"power,omitempty"`
}

// Fidelity compares the RTT distribution an observer at SampleRate reports
// with the one an observer at rate 1 reports over the same connections.
type Fidelity struct {
	Workload   string `json:"workload"`
	SampleRate int    `json:"sample_rate"`
	// RTT samples each observer kept over the window.
	Samples          float64 `json:"samples"`
	ReferenceSamples float64 `json:"reference_samples"`
	// QuantileErrorPct is 100·(q_rate − q_1)/q_1 for p50, p90 and p99,
	// quantiles interpolated inside the kernel's log2 buckets.
	QuantileErrorPct map[string]float64 `json:"quantile_error_pct"`
	// KS is the Kolmogorov-Smirnov distance between the two distributions
	// (largest gap between their CDFs at the bucket bounds), 0..1.
	KS float64 `json:"ks"`
}

// Power is what the run's gate can see: the smallest added cost it detects
// 95% of the time at the run's pairs, and how often it fires on an A/A cell.
type Power struct {
	Metric    string  `json:"metric"` // accounted_per_op_ns, cpu_per_op_ns or throughput_overhead_pct
	Unit      string  `json:"unit"`   // ns/op or pct
	Workload  string  `json:"workload"`
	Cell      string  `json:"cell"` // the observer cell the A/A and injected arms compare with
	Pairs     int     `json:"pairs"`
	Threshold float64 `json:"threshold"` // the gate's: a change must also exceed it
	// Detectable is the smallest added cost the gate flags in 95% of
	// resampled runs of Pairs pairs, from the A/A pairs' own spread.
	Detectable float64 `json:"detectable"`
	// FalseAlarmRate is the share of resampled A/A runs the gate flags.
	FalseAlarmRate float64 `json:"false_alarm_rate"`
	AAPairs        int     `json:"aa_pairs"`
	AAFrom         string  `json:"aa_from"` // the cells whose difference is the A/A
	// Injected is the known cost added by the inject arm, as measured
	// (median paired difference), and the share of resampled runs that
	// flag it.
	Injected      float64 `json:"injected,omitempty"`
	DetectionRate float64 `json:"detection_rate"`
	Note          string  `json:"note,omitempty"`
}

// StatsCost is what enabling the kernel's BPF run-time statistics adds to
// each program run, measured at the start of the run (BPF_PROG_TEST_RUN).
type StatsCost struct {
	OffNsPerRun   float64 `json:"off_ns_per_run"`
	OnNsPerRun    float64 `json:"on_ns_per_run"`
	AddedNsPerRun float64 `json:"added_ns_per_run"`
	Note          string  `json:"note,omitempty"`
}

// Latency is loadgen's latency_ns object.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Loadgen is one `loadgen client --json` result.
type Loadgen struct {
	Mode          string  `json:"mode"`
	Ops           float64 `json:"ops"`
	OpsPerSec     float64 `json:"ops_per_sec"`
	Bytes         float64 `json:"bytes"`
	ThroughputBps float64 `json:"throughput_bps"`
	Errors        float64 `json:"errors"`
	LatencyNs     Latency `json:"latency_ns"`
}

// Program is one BPF program's kernel statistics over a measured window.
type Program struct {
	ID        uint32 `json:"id"`
	Name      string `json:"name"`
	RunTimeNs uint64 `json:"run_time_ns"`
	RunCount  uint64 `json:"run_count"`
}

// Probe is what bench saw of the observer during one measured window.
type Probe struct {
	AgentCPUNs        int64              `json:"agent_cpu_ns"`
	AgentRestCPUNs    int64              `json:"agent_rest_cpu_ns"` // during the settle gap before the run: no load
	RestNs            int64              `json:"rest_ns"`           // that gap's length
	AgentPeakRSSBytes int64              `json:"agent_peak_rss_bytes"`
	Programs          []Program          `json:"programs,omitempty"`
	MapMemlockBytes   int64              `json:"map_memlock_bytes"`
	EventsLost        float64            `json:"events_lost"`
	EventsSampledOut  float64            `json:"events_sampled_out"`
	MapEntries        map[string]float64 `json:"map_entries,omitempty"`
	MapCapacity       map[string]float64 `json:"map_capacity,omitempty"`
	Scraped           bool               `json:"scraped"` // the observer's /metrics answered
	// The observer's flushes in the window: how many, their CPU and wall
	// time, and its flush-duration histogram's bucket counts (by upper
	// bound in seconds, cumulative as Prometheus exports them).
	Flushes      float64            `json:"flushes,omitempty"`
	FlushCPUNs   float64            `json:"flush_cpu_ns,omitempty"`
	FlushWallNs  float64            `json:"flush_wall_ns,omitempty"`
	FlushBuckets map[string]float64 `json:"flush_buckets,omitempty"`
}

// Sample is one measured run of one arm.
type Sample struct {
	Pair    int       `json:"pair"` // the round it was measured in
	Seq     int       `json:"seq"`  // its place in the round's rotated order
	Start   time.Time `json:"start"`
	Loadgen Loadgen   `json:"loadgen"`
	Probe   *Probe    `json:"probe,omitempty"`
	// CPU over the measured window: the load's (loadgen client and server,
	// from their own cgroup: their system calls, the stack and the BPF
	// programs running in them) and the machine's (every CPU's non-idle
	// time, /proc/stat).
	LoadCPUNs     int64 `json:"load_cpu_ns"`
	LoadSysNs     int64 `json:"load_sys_ns"` // of which in the kernel
	MachineBusyNs int64 `json:"machine_busy_ns"`
	WindowNs      int64 `json:"window_ns"`
	// Accounting is the short run after the measured one that times the
	// programs with the kernel's statistics on.
	Accounting *Accounting `json:"accounting,omitempty"`
}

// Accounting is one accounting run: operations and the programs' statistics.
type Accounting struct {
	Ops      float64   `json:"ops"`
	Programs []Program `json:"programs"`
}

// NsPerOp is the programs' run time per operation.
func (a *Accounting) NsPerOp() float64 {
	if a == nil || a.Ops <= 0 {
		return 0
	}
	var t uint64
	for _, p := range a.Programs {
		t += p.RunTimeNs
	}
	return float64(t) / a.Ops
}

// Cell is one configuration with its statistics and raw samples.
type Cell struct {
	Key          string            `json:"key"`
	Workload     string            `json:"workload"`
	WorkloadSpec matrix.Workload   `json:"workload_spec"`
	Transport    string            `json:"transport"`
	MapType      string            `json:"map_type"`
	SampleRate   matrix.SampleRate `json:"sample_rate"`
	BPFStats     matrix.Stats      `json:"bpf_stats"`
	// FlushInterval, MaxConnections, Arm, Observer: see matrix.Cell.
	FlushInterval  matrix.Duration `json:"flush_interval,omitempty"`
	MaxConnections int             `json:"max_connections,omitempty"`
	Arm            matrix.Arm      `json:"arm,omitempty"`
	Observer       string          `json:"observer,omitempty"`
	Kernel         string          `json:"kernel"`
	Status         string          `json:"status"` // ok | failed
	Error          string          `json:"error,omitempty"`
	Warnings       []string        `json:"warnings,omitempty"`
	Start          time.Time       `json:"start"`
	End            time.Time       `json:"end"`

	ThroughputMetric      string                    `json:"throughput_metric"` // ops_per_sec or throughput_bps
	ThroughputOverheadPct float64                   `json:"throughput_overhead_pct"`
	CILow                 float64                   `json:"ci_low"`
	CIHigh                float64                   `json:"ci_high"`
	Significant           bool                      `json:"significant"`
	PValue                float64                   `json:"p_value"` // Mann-Whitney U, baseline vs observed throughput
	BaselineThroughput    stats.Summary             `json:"baseline_throughput"`
	ObservedThroughput    stats.Summary             `json:"observed_throughput"`
	LatencyOverheadPct    map[string]stats.Estimate `json:"latency_overhead_pct"`

	BPFNsPerRun       map[string]float64 `json:"bpf_ns_per_run"`
	RunsPerOp         map[string]float64 `json:"runs_per_op"`
	EventsLost        float64            `json:"events_lost"`
	EventsSampledOut  float64            `json:"events_sampled_out"`
	AgentCPUPerOpNs   float64            `json:"agent_cpu_per_op_ns"`
	AgentRestCPUShare float64            `json:"agent_rest_cpu_share"` // CPU seconds per second with no load
	AgentPeakRSSBytes int64              `json:"agent_peak_rss_bytes"`
	MapMemoryBytes    int64              `json:"map_memory_bytes"`
	MapEntries        map[string]float64 `json:"map_entries,omitempty"`
	MapCapacity       map[string]float64 `json:"map_capacity,omitempty"`
	// One flush of the connection map, over the observed runs: CPU per
	// flush (mean) and wall time quantiles from the observer's histogram.
	Flushes     float64 `json:"flushes,omitempty"`
	FlushCPUNs  float64 `json:"flush_cpu_ns,omitempty"`
	FlushP50Ns  float64 `json:"flush_p50_ns,omitempty"`
	FlushP99Ns  float64 `json:"flush_p99_ns,omitempty"`
	HeldSockets int     `json:"held_sockets,omitempty"` // open beside the load (2 per held connection)

	// Cost per operation, end to end: CPU time of the load and the
	// observer per operation, observed − baseline, paired by round.
	OfferedRate        float64        `json:"offered_rate"` // ops/s, 0 for closed loop
	CPUPerOpNs         float64        `json:"cpu_per_op_ns"`
	CPUPerOpCILow      float64        `json:"cpu_per_op_ci_low"`
	CPUPerOpCIHigh     float64        `json:"cpu_per_op_ci_high"`
	BaselineCPUPerOpNs float64        `json:"baseline_cpu_per_op_ns"`
	CPUOverheadPct     stats.Estimate `json:"cpu_overhead_pct"`
	// MachineCPUPerOp is the same from the machine's busy time, which
	// background work and idle accounting also move: kept to compare.
	MachineCPUPerOp stats.Estimate `json:"machine_cpu_per_op_ns"`
	// SysCPUPerOp counts only the load's kernel time (and the observer's
	// CPU): the part the observer's hooks add to, without the noise of the
	// load's own user space.
	SysCPUPerOp stats.Estimate `json:"sys_cpu_per_op_ns"`

	// Cost per operation, accounted: BPF run time + the observer's CPU +
	// the kernel's dispatch of the hooks (the floor cell's end-to-end cost).
	AccountedPerOpNs float64        `json:"accounted_per_op_ns"`
	Accounted        stats.Estimate `json:"accounted_per_op"`
	BPFPerOpNs       float64        `json:"bpf_per_op_ns"`
	// BPFNetPerOpNs is BPFPerOpNs less, run for run, what the floor's empty
	// program on the same hook measures: the statistics' own clock reads.
	BPFNetPerOpNs      float64        `json:"bpf_net_per_op_ns"`
	DispatchCI         stats.Estimate `json:"dispatch_per_op"`
	DispatchPerOpNs    float64        `json:"dispatch_per_op_ns"`
	UnaccountedPerOpNs float64        `json:"unaccounted_per_op_ns"` // end to end − accounted

	// PrimaryMetric is the figure a cell's precision is judged by:
	// throughput_overhead_pct in closed loop, cpu_overhead_pct in open loop.
	PrimaryMetric string  `json:"primary_metric"`
	CIHalfWidth   float64 `json:"ci_half_width"` // of the primary metric, points

	Baseline []Sample `json:"baseline"`
	Observed []Sample `json:"observed"`

	// floorNs is the floor's ns per run by observer program (File.Summarize).
	floorNs map[string]float64
}

// OK reports whether the cell was measured to the end.
func (c *Cell) OK() bool { return c.Status == "ok" }

// Label is a short human name: "crr-64 ringbuf hash rate=1".
func (c *Cell) Label() string {
	s := fmt.Sprintf("%s %s %s rate=%s", c.Workload, c.Transport, c.MapType, c.SampleRate)
	if c.SampleRate == matrix.Off {
		s = fmt.Sprintf("%s no observer (A/A)", c.Workload)
	}
	if c.Arm == matrix.ArmFloor {
		s = fmt.Sprintf("%s floor (empty programs on the hooks)", c.Workload)
	}
	if c.BPFStats != matrix.DefaultStats {
		s += " bpf_stats=" + string(c.BPFStats)
	}
	if c.FlushInterval > 0 {
		s += " flush=" + c.FlushInterval.D().String()
	}
	if c.MaxConnections > 0 {
		s += fmt.Sprintf(" max_connections=%d", c.MaxConnections)
	}
	if c.Observer != "" {
		s += " [" + c.Observer + "]"
	}
	switch c.Arm {
	case matrix.ArmInject:
		s += " +injected"
	case matrix.ArmAgain:
		s += " (again)"
	}
	return s
}

// Measured returns the cells measured to the end, in order.
func (f *File) Measured() []Cell {
	var out []Cell
	for _, c := range f.Cells {
		if c.OK() {
			out = append(out, c)
		}
	}
	return out
}

// Find returns the cell with key, or nil.
func (f *File) Find(key string) *Cell {
	for i := range f.Cells {
		if f.Cells[i].Key == key {
			return &f.Cells[i]
		}
	}
	return nil
}

// Put replaces the cell with the same key or appends it.
func (f *File) Put(c Cell) {
	if old := f.Find(c.Key); old != nil {
		*old = c
		return
	}
	f.Cells = append(f.Cells, c)
}

// Save writes dir/results.json atomically: a reader (or a crash) sees the
// old file or the new one, never half of one.
func Save(dir string, f *File) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".results-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, FileName))
}

// Load reads results.json from dir (or from a path to the file itself).
func Load(dirOrFile string) (*File, error) {
	path := dirOrFile
	if st, err := os.Stat(dirOrFile); err == nil && st.IsDir() {
		path = filepath.Join(dirOrFile, FileName)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read results: %w", err)
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: not a bench results file: %v", path, err)
	}
	return &f, nil
}
