package plot

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results/resultstest"
)

func TestAllWritesNonEmptyPNGs(t *testing.T) {
	dir := t.TempDir()
	figs, err := All(resultstest.File("6.18", 1, resultstest.Curve(6, 2, 0.5, 0.02, 6)...), dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"overhead_crr-64_ringbuf.png": false, "overhead_crr-64_perf.png": false,
		"bpf_ns_per_run.png": false, "agent_cpu.png": false, "latency_crr-64.png": false}
	for _, f := range figs {
		st, err := os.Stat(filepath.Join(dir, f.File))
		if err != nil || st.Size() < 2000 || f.Caption == "" {
			t.Errorf("%s: %v", f.File, err)
		}
		if _, ok := want[f.File]; ok {
			want[f.File] = true
		}
	}
	for f, seen := range want {
		if !seen {
			t.Errorf("%s not drawn", f)
		}
	}
}

func TestNothingToDrawIsNotAnError(t *testing.T) {
	figs, err := All(&results.File{}, t.TempDir())
	if err != nil || len(figs) != 0 {
		t.Errorf("empty results: %v %v", figs, err)
	}
	if figs, err := Kernels([]*results.File{{}}, t.TempDir()); err != nil || figs != nil {
		t.Errorf("one kernel: %v %v", figs, err)
	}
}
