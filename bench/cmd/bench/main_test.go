package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/report"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results/resultstest"
)

func writeResults(t *testing.T, f *results.File) string {
	t.Helper()
	dir := t.TempDir()
	if err := results.Save(dir, f); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCompareExitCodes(t *testing.T) {
	old := writeResults(t, resultstest.File("6.18", 1, resultstest.Curve(3, 1, 0.3, 0.02, 10)...))
	noise := writeResults(t, resultstest.File("6.18", 2, resultstest.Curve(3, 1, 0.3, 0.02, 10)...))
	worse := writeResults(t, resultstest.File("6.18", 3, resultstest.Curve(15, 1, 0.3, 0.02, 10)...))

	if err := cmdCompare([]string{old, noise}); err != nil {
		t.Errorf("noise: %v, want exit 0", err)
	}
	var code exitError
	if err := cmdCompare([]string{old, worse, "--threshold", "2"}); !errors.As(err, &code) || code != 1 {
		t.Errorf("regression: %v, want exit 1", err)
	}
	if err := cmdCompare([]string{old, worse, "--threshold", "30"}); err != nil {
		t.Errorf("within a 30-point threshold: %v", err)
	}
	if err := cmdCompare([]string{old}); !errors.Is(err, errUsage) {
		t.Errorf("one argument: %v", err)
	}
}

func TestTuneExitCodes(t *testing.T) {
	dir := writeResults(t, resultstest.File("6.18", 1, resultstest.Curve(8, 3, 0.5, 0.01, 10)...))
	if err := cmdTune([]string{"--budget", "5", "--results", dir}); err != nil {
		t.Errorf("budget 5: %v", err)
	}
	var code exitError
	if err := cmdTune([]string{"--budget", "0.1", "--results", dir}); !errors.As(err, &code) || code != 1 {
		t.Errorf("impossible budget: %v, want exit 1", err)
	}
	if err := cmdTune([]string{"--results", dir}); !errors.Is(err, errUsage) {
		t.Errorf("no budget: %v", err)
	}
}

func TestReportRegeneratesFromResults(t *testing.T) {
	// two cells keep the rendering (slow under -race) short; report's own tests cover the rest
	dir := writeResults(t, resultstest.File("6.18", 1, resultstest.Curve(8, 3, 0.5, 0.02, 6)[:2]...))
	if err := cmdReport([]string{dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "report.md")); err != nil {
		t.Error(err)
	}
	k1 := writeResults(t, resultstest.File("6.1.0", 1, resultstest.Curve(8, 3, 0.5, 0.02, 6)[:2]...))
	k2 := writeResults(t, resultstest.File("6.12.0", 2, resultstest.Curve(4, 1, 0.5, 0.02, 6)[:2]...))
	out := t.TempDir()
	if err := cmdReport([]string{"--kernels", k1, k2, "--out", out}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "kernels.png")); err != nil {
		t.Error(err)
	}
}

// benchstat reads what bench writes. It is an optional tool: the test runs
// when benchstat is on PATH or in ~/go/bin, and says so when it is not.
func TestBenchstatParsesOutput(t *testing.T) {
	bs, err := exec.LookPath("benchstat")
	if err != nil {
		home, _ := os.UserHomeDir()
		bs = filepath.Join(home, "go", "bin", "benchstat")
		if _, err := os.Stat(bs); err != nil {
			t.Skip("benchstat not installed (go install golang.org/x/perf/cmd/benchstat@latest); format not checked against it")
		}
	}
	file := filepath.Join(t.TempDir(), "benchstat.txt")
	fh, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := report.WriteBenchstat(fh, resultstest.File("6.18", 1, resultstest.Curve(8, 3, 0.5, 0.02, 6)...), ""); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	out, err := exec.Command(bs, "-col", "/arm", file).CombinedOutput()
	if err != nil {
		t.Fatalf("benchstat: %v\n%s", err, out)
	}
	for _, want := range []string{"vs base", "workload=crr-64/transport=ringbuf/map=hash/rate=1", "ops/s"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("benchstat output lacks %q:\n%s", want, out)
		}
	}
}
