package fidelity

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
)

func TestMeasureChecksOptions(t *testing.T) {
	_, err := Measure(context.Background(), Options{Workload: matrix.Workload{Mode: "crr"}, Rates: []int{0}})
	if err == nil {
		t.Fatal("empty options accepted")
	}
	for _, want := range []string{"observer binary", "loadgen binary", "duration", "sample rate 0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans lines: %q", err)
	}
}

var build struct {
	once              sync.Once
	dir               string
	observer, loadgen string
	err               error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// buildBinaries builds the observer and loadgen from this tree once per test
// binary, so the tests measure the code under test and not a stale bin/.
func buildBinaries(t *testing.T) (observer, loadgen string) {
	t.Helper()
	build.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			build.err = fmt.Errorf("no go command on PATH: %v", err)
			return
		}
		if build.dir, build.err = os.MkdirTemp("", "fidelity-test-"); build.err != nil {
			return
		}
		for _, pkg := range []string{"agent/cmd/ebpf-net-obs", "loadgen/cmd/loadgen"} {
			out, err := exec.Command(goBin, "build", "-o", build.dir+"/", "github.com/ebpf-net-obs/ebpf-net-obs/"+pkg).CombinedOutput()
			if err != nil {
				build.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
		build.observer, build.loadgen = filepath.Join(build.dir, "ebpf-net-obs"), filepath.Join(build.dir, "loadgen")
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.observer, build.loadgen
}

func TestMeasureCRR(t *testing.T) {
	privtest.Require(t)
	obs, lg := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log bytes.Buffer
	start := time.Now()
	fs, err := Measure(ctx, Options{ObserverBin: obs, LoadgenBin: lg,
		Workload: matrix.Workload{Name: "crr-64", Mode: "crr", Size: 64, Concurrency: 4},
		Rates:    []int{10}, Duration: 2 * time.Second, Log: &log})
	t.Logf("Measure took %s:\n%s", time.Since(start).Round(time.Millisecond), log.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 {
		t.Fatalf("got %d results, want 1 (rate 1 is the reference, not a result): %+v", len(fs), fs)
	}
	f := fs[0]
	t.Logf("%+v", f)
	if f.Workload != "crr-64" || f.SampleRate != 10 {
		t.Errorf("labelled %s rate %d", f.Workload, f.SampleRate)
	}
	if f.ReferenceSamples <= 0 {
		t.Fatalf("reference observer kept no RTT samples")
	}
	// the hash keeps about 1 in 10 connections: well inside 1/40 .. 1/3
	if f.Samples <= 0 || f.Samples < f.ReferenceSamples/40 || f.Samples > f.ReferenceSamples/3 {
		t.Errorf("rate 10 kept %v of %v RTT samples, want between 1/40 and 1/3", f.Samples, f.ReferenceSamples)
	}
	if f.KS < 0 || f.KS > 1 || math.IsNaN(f.KS) {
		t.Errorf("KS %v outside [0, 1]", f.KS)
	}
	for _, q := range Quantiles {
		e, ok := f.QuantileErrorPct[q.Name]
		if !ok || math.IsNaN(e) || math.IsInf(e, 0) {
			t.Errorf("%s error %v (present %v), want a finite number", q.Name, e, ok)
		}
	}
}

// TestMeasureCleansUpOnError: an observer that dies at start-up fails
// Measure with one line naming it, and the loadgen server started before
// it is gone when Measure returns.
func TestMeasureCleansUpOnError(t *testing.T) {
	privtest.Require(t)
	_, lg := buildBinaries(t)
	falseBin, err := exec.LookPath("false")
	if err != nil {
		t.Skip("no false(1) on PATH")
	}
	_, err = Measure(context.Background(), Options{ObserverBin: falseBin, LoadgenBin: lg,
		Workload: matrix.Workload{Name: "crr-64", Mode: "crr", Size: 64, Concurrency: 4},
		Rates:    []int{10}, Duration: time.Second})
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("want a one-line error about the observer exiting, got %v", err)
	}
	t.Log(err)
	if pids := running(t, lg); len(pids) > 0 {
		t.Errorf("loadgen still running after Measure failed: pids %v", pids)
	}
}

// running lists the processes whose executable is bin.
func running(t *testing.T, bin string) []string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && exe == bin {
			out = append(out, e.Name())
		}
	}
	return out
}
