package report

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results/resultstest"
)

func TestWriteRendersReportPlotsAndBenchstat(t *testing.T) {
	dir := t.TempDir()
	f := resultstest.File("6.18.0", 1, resultstest.Curve(6, 2, 0.5, 0.02, 6)...)
	f.Cells[2].Warnings = []string{"observer did not stop cleanly: exit status 1"}
	f.Meta.BPFStatsCost = &results.StatsCost{OffNsPerRun: 15, OnNsPerRun: 49, AddedNsPerRun: 34}
	if err := Write(f, dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Environment", "bin/bench run --profile synthetic", "A/A check", "BPF run-time statistics on (crr-64 ringbuf hash rate=1)", "add 34.0 ns to every BPF program run",
		"crr-64 ringbuf hash rate=1", "`set_state`", "observer did not stop cleanly", "![", "overhead_crr-64_ringbuf.png",
		"| agent CPU at rest |", "| 0.40% |"} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	// Each non-default statistics mode: difference = its overhead − the default's.
	re := regexp.MustCompile(`statistics (on|sampled) \(.*?\): overhead ([-+][0-9.]+)%, against ([-+][0-9.]+)%.*?difference ([-+][0-9.]+)%`)
	lines := re.FindAllSubmatch(md, -1)
	if len(lines) != 2 {
		t.Fatalf("%d statistics comparison lines, want on and sampled", len(lines))
	}
	for _, m := range lines {
		other, def, diff := atof(t, m[2]), atof(t, m[3]), atof(t, m[4])
		if math.Abs(diff-(other-def)) > 0.15 {
			t.Errorf("statistics %s: difference %+.1f, but %+.1f − %+.1f = %+.1f", m[1], diff, other, def, other-def)
		}
	}
	pngs, _ := filepath.Glob(filepath.Join(dir, "*.png"))
	if len(pngs) < 5 {
		t.Errorf("only %d plots: %v", len(pngs), pngs)
	}
	for _, p := range pngs {
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(fh)
		fh.Close()
		if err != nil || img.Bounds().Dx() < 100 || img.Bounds().Dy() < 100 {
			t.Errorf("%s: not a real PNG (%v)", p, err)
		}
		if !bytes.Contains(md, []byte(filepath.Base(p))) {
			t.Errorf("report.md does not show %s", filepath.Base(p))
		}
	}
	bs, _ := os.ReadFile(filepath.Join(dir, "benchstat.txt"))
	line := "BenchmarkOverhead/workload=crr-64/transport=ringbuf/map=hash/rate=1/arm=observed 1 "
	if !bytes.Contains(bs, []byte(line)) || !bytes.Contains(bs, []byte(" ops/s ")) {
		t.Errorf("benchstat.txt:\n%s", bs)
	}
}

func TestKernelsComparison(t *testing.T) {
	dir := t.TempDir()
	a := resultstest.File("6.1.0-47-amd64", 1, resultstest.Curve(6, 2, 0.5, 0.02, 5)[:4]...)
	b := resultstest.File("6.12.0", 2, resultstest.Curve(3, 1, 0.2, 0.02, 5)[:4]...)
	if err := WriteKernels([]*results.File{a, b}, dir); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "kernels.md"))
	if !strings.Contains(string(md), "6.1.0-47-amd64") || !strings.Contains(string(md), "kernels.png") {
		t.Errorf("kernels.md:\n%s", md)
	}
	if st, err := os.Stat(filepath.Join(dir, "kernels.png")); err != nil || st.Size() < 1000 {
		t.Errorf("kernels.png: %v", err)
	}
	if err := WriteKernels([]*results.File{a}, dir); err == nil {
		t.Error("one kernel accepted")
	}
}

func TestReproduceQuotes(t *testing.T) {
	f := resultstest.File("k", 1)
	f.Meta.Command = []string{"bin/bench", "run", "--observer-cmd", "bpftrace -e 'x'"}
	if got := Reproduce(f.Meta); got != `bin/bench run --observer-cmd 'bpftrace -e '\''x'\'''` {
		t.Errorf("Reproduce = %s", got)
	}
}

func atof(t *testing.T, b []byte) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A report written into a directory an earlier run used leaves none of
// that run's figures behind.
func TestWriteRemovesStalePlots(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "overhead_rr-64_perf.png")
	if err := os.WriteFile(stale, []byte("an earlier run's plot"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := resultstest.File("6.18.0", 1, resultstest.Curve(6, 2, 0.5, 0.02, 6)...)
	if err := Write(f, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("%s kept: %v", stale, err)
	}
	if pngs, _ := filepath.Glob(filepath.Join(dir, "*.png")); len(pngs) < 5 {
		t.Errorf("only %d plots drawn", len(pngs))
	}
}
