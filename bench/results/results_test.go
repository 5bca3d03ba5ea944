package results

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
)

func cellWithProbes() Cell {
	c := Cell{Key: "crr-64/ringbuf/hash/rate=1", Workload: "crr-64", Status: "ok", SampleRate: 1, BPFStats: matrix.StatsSampled,
		WorkloadSpec: matrix.Workload{Name: "crr-64", Mode: "crr"}}
	for i, tput := range []float64{1000, 1100, 900} {
		c.Baseline = append(c.Baseline, Sample{Pair: i, Loadgen: Loadgen{Ops: tput, OpsPerSec: tput}})
		c.Observed = append(c.Observed, Sample{Pair: i, Loadgen: Loadgen{Ops: tput * 0.9, OpsPerSec: tput * 0.9},
			Probe: &Probe{AgentCPUNs: int64(tput * 0.9 * 500), AgentPeakRSSBytes: int64(10+i) << 20, EventsLost: 1,
				AgentRestCPUNs: int64(i+1) * 1e6, RestNs: 500e6, // 2, 4 and 6 ms/s: 4 ms/s over the three gaps
				Programs: []Program{{Name: "set_state", RunTimeNs: uint64(tput * 0.9 * 4 * 250), RunCount: uint64(tput * 0.9 * 4)}}}})
	}
	c.Summarize()
	return c
}

func TestSummarizeAggregatesProbes(t *testing.T) {
	c := cellWithProbes()
	if d := c.ThroughputOverheadPct - 10; d > 1e-9 || d < -1e-9 {
		t.Errorf("overhead %v, want 10", c.ThroughputOverheadPct)
	}
	if c.BPFNsPerRun["set_state"] != 250 || c.RunsPerOp["set_state"] != 4 {
		t.Errorf("per program: %v ns/run, %v runs/op", c.BPFNsPerRun, c.RunsPerOp)
	}
	if c.BPFNsPerOp() != 1000 || c.AgentCPUPerOpNs != 500 {
		t.Errorf("per op: BPF %v, agent %v", c.BPFNsPerOp(), c.AgentCPUPerOpNs)
	}
	if d := c.AgentRestCPUShare - 0.004; d > 1e-12 || d < -1e-12 {
		t.Errorf("CPU at rest %v of a CPU, want 0.004 (total CPU over total rest time)", c.AgentRestCPUShare)
	}
	if c.AgentPeakRSSBytes != 12<<20 || c.EventsLost != 3 {
		t.Errorf("peak RSS %d (max), lost %v (sum)", c.AgentPeakRSSBytes, c.EventsLost)
	}
	if c.Significant {
		t.Error("3 pairs called significant")
	}
}

func TestSaveLoadRoundTripLeavesNoTemporaries(t *testing.T) {
	dir := t.TempDir()
	f := &File{Meta: Meta{Kernel: "6.18", Profile: "quick"}}
	f.Put(cellWithProbes())
	f.Put(Cell{Key: "other", Status: "failed", Error: "boom"})
	c := cellWithProbes()
	c.Warnings = []string{"replaced"}
	f.Put(c) // same key: replaces
	if err := Save(dir, f); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != FileName {
		t.Errorf("directory holds %v", entries)
	}
	back, err := Load(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Cells) != 2 || back.Find("crr-64/ringbuf/hash/rate=1").Warnings[0] != "replaced" || back.Find("other").OK() {
		t.Errorf("round trip: %+v", back.Cells)
	}
	if back.Cells[0].SampleRate != 1 || back.Cells[0].BPFNsPerRun["set_state"] != 250 {
		t.Errorf("fields lost: %+v", back.Cells[0])
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("empty directory loaded")
	}
}
