package runner

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
)

// requireBinary returns the repository's bin/NAME. A missing binary skips
// the test with a message, except under CI=true, where CI has run
// `make build` and a missing binary is a failure.
func requireBinary(t *testing.T, name string) string {
	t.Helper()
	bin, _ := filepath.Abs(filepath.Join("..", "..", "bin", name))
	if err := CheckBinary(bin); err != nil {
		msg := "END-TO-END TEST NOT RUN: " + err.Error()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (CI=true: CI builds before testing)")
		}
		t.Skip(msg)
	}
	return bin
}

// TestEndToEndRealLoadgen runs a tiny profile against the real bin/loadgen
// and testdata/fakeobserver, which attaches a real BPF program when root:
// then the kernel's run counts must show up as runs per operation in the
// bpf_stats=on cell, and not at all in the sampled one (bench must neither
// hold the statistics on there nor read counters that move in windows only).
func TestEndToEndRealLoadgen(t *testing.T) {
	loadgen := requireBinary(t, "loadgen")
	obs := filepath.Join(t.TempDir(), "fakeobserver")
	if out, err := exec.Command("go", "build", "-o", obs, "./testdata/fakeobserver").CombinedOutput(); err != nil {
		t.Fatalf("build fake observer: %v\n%s", err, out)
	}
	p, err := matrix.Parse("e2e", []byte(`
run: {duration: 500ms, warmup: 200ms, settle: 100ms, pairs: 2, health_timeout: 20s}
workloads: {crr-64: {mode: crr, size: 64, concurrency: 1}}
groups:
  - {workloads: [crr-64], transports: [ringbuf], map_types: [hash], sample_rates: [1], bpf_stats: [sampled, "on"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	f, err := Run(context.Background(), Config{Profile: p, OutDir: out, LoadgenBin: loadgen,
		Observers: []Observer{{Bin: obs}}, Log: testLog{t}, Command: []string{"test"}})
	if err != nil {
		for _, c := range f.Cells {
			t.Logf("%s: %s %s", c.Key, c.Status, c.Error)
		}
		t.Fatal(err)
	}
	if _, err := results.Load(out); err != nil {
		t.Fatal(err)
	}
	if len(f.Cells) != 2 {
		t.Fatalf("%d cells, want the sampled and the on cell", len(f.Cells))
	}
	for _, c := range f.Cells {
		if !c.OK() || c.BaselineThroughput.Median <= 0 || c.ObservedThroughput.Median <= 0 {
			t.Errorf("%s: %s %s, throughput %v/%v", c.Key, c.Status, c.Error, c.BaselineThroughput.Median, c.ObservedThroughput.Median)
		}
		if c.AgentPeakRSSBytes <= 0 {
			t.Errorf("%s: no agent RSS", c.Key)
		}
		if c.BPFStats == matrix.StatsSampled && len(c.RunsPerOp)+len(c.BPFNsPerRun) > 0 {
			t.Errorf("%s: BPF runs per op %v, ns per run %v: timed in a sampled cell", c.Key, c.RunsPerOp, c.BPFNsPerRun)
		}
		if os.Geteuid() == 0 && c.BPFStats == matrix.StatsOn && c.RunsPerOp["fake_state"] < 1 {
			t.Errorf("%s: BPF runs per op %v: the fake observer's tracepoint program was not measured (warnings %v)", c.Key, c.RunsPerOp, c.Warnings)
		}
	}
}
