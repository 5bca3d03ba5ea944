package runner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
)

const fastProfile = `
run: {duration: 60ms, warmup: 20ms, settle: 10ms, pairs: 2, health_timeout: 5s}
workloads: {crr-64: {mode: crr, size: 64, concurrency: 1}}
groups:
  - {workloads: [crr-64], transports: [ringbuf], map_types: [hash], sample_rates: ["off", 1]}
`

// observedOnly is fastProfile without the off cell, for tests about the observer.
const observedOnly = `
run: {duration: 60ms, warmup: 20ms, settle: 10ms, pairs: 1, health_timeout: 5s}
workloads: {crr-64: {mode: crr, size: 64, concurrency: 1}}
groups:
  - {workloads: [crr-64], transports: [ringbuf], map_types: [hash], sample_rates: [1]}
`

func fakeConfig(t *testing.T, profileYAML string) Config {
	t.Helper()
	t.Setenv("BENCH_FAKE", "1")
	p, err := matrix.Parse("fast", []byte(profileYAML))
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Config{Profile: p, OutDir: t.TempDir(), LoadgenBin: self, Observer: Observer{Bin: self},
		Command: []string{"bench", "run"}, Log: testLog{t}}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func TestRunWithFakeBinaries(t *testing.T) {
	cfg := fakeConfig(t, fastProfile)
	f, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := results.Load(cfg.OutDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(onDisk.Cells) != 2 || len(f.Cells) != 2 {
		t.Fatalf("cells on disk %d, returned %d", len(onDisk.Cells), len(f.Cells))
	}
	if onDisk.Meta.Profile != "fast" || onDisk.Meta.Kernel == "" || onDisk.Meta.CPUs < 1 || onDisk.Meta.Commit == "" {
		t.Errorf("meta %+v", onDisk.Meta)
	}
	for _, c := range onDisk.Cells {
		if !c.OK() || len(c.Baseline) != 2 || len(c.Observed) != 2 || c.Kernel == "" {
			t.Fatalf("cell %s: status %s %s, %d/%d samples", c.Key, c.Status, c.Error, len(c.Baseline), len(c.Observed))
		}
		// ABBA: pair 1 runs baseline first, pair 2 observed first
		if !(c.Baseline[0].Seq < c.Observed[0].Seq && c.Observed[1].Seq < c.Baseline[1].Seq) {
			t.Errorf("%s: not ABBA: baseline seqs %d,%d observed %d,%d", c.Key, c.Baseline[0].Seq, c.Baseline[1].Seq, c.Observed[0].Seq, c.Observed[1].Seq)
		}
	}
	off, on := onDisk.Find("crr-64/none/none/rate=off"), onDisk.Find("crr-64/ringbuf/hash/rate=1")
	if off == nil || on == nil {
		t.Fatal("cells missing")
	}
	if off.Observed[0].Probe != nil {
		t.Error("the off cell ran an observer")
	}
	p := on.Observed[0].Probe
	if p == nil || !p.Scraped || p.EventsLost != 2 || p.EventsSampledOut != 10 || p.AgentPeakRSSBytes <= 0 {
		t.Errorf("observed probe %+v", p)
	}
	// the observer's rest is measured over the settle gap (10ms in fastProfile)
	if p != nil && (p.RestNs < int64(10*time.Millisecond) || p.AgentRestCPUNs < 0) {
		t.Errorf("rest window %d ns, CPU %d ns", p.RestNs, p.AgentRestCPUNs)
	}
	if on.EventsLost != 4 || on.MapCapacity["conns"] != 1024 {
		t.Errorf("cell events_lost %v capacity %v", on.EventsLost, on.MapCapacity)
	}
}

func TestResumeSkipsCompletedCells(t *testing.T) {
	cfg := fakeConfig(t, strings.Replace(fastProfile, "pairs: 2", "pairs: 1", 1))
	counter := filepath.Join(t.TempDir(), "clients")
	t.Setenv("BENCH_FAKE_COUNT", counter)
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	clients := func() int {
		data, _ := os.ReadFile(counter)
		return strings.Count(string(data), "\n")
	}
	first := clients() // 2 cells x 1 pair x 2 arms
	if first != 4 {
		t.Fatalf("first run started %d clients, want 4", first)
	}
	// mark one cell failed, as a run that died would leave it
	f, _ := results.Load(cfg.OutDir)
	f.Cells[1].Status = "failed"
	if err := results.Save(cfg.OutDir, f); err != nil {
		t.Fatal(err)
	}
	cfg.Resume = true
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if got := clients() - first; got != 2 {
		t.Errorf("resume started %d clients, want 2 (only the unfinished cell)", got)
	}
	f, _ = results.Load(cfg.OutDir)
	if len(f.Cells) != 2 || !f.Cells[1].OK() || len(f.Meta.Resumed) != 1 {
		t.Errorf("after resume: %d cells, second ok=%v, resumed=%v", len(f.Cells), f.Cells[1].OK(), f.Meta.Resumed)
	}
	// resuming with another profile is refused
	other := fakeConfig(t, observedOnly)
	other.OutDir, other.Resume, other.Profile.Name = cfg.OutDir, true, "quick"
	if _, err := Run(context.Background(), other); err == nil || !strings.Contains(err.Error(), "holds profile") {
		t.Errorf("resume across profiles: %v", err)
	}
}

func TestObserverThatDiesIsACellFailure(t *testing.T) {
	cfg := fakeConfig(t, observedOnly)
	t.Setenv("BENCH_FAKE_OBSERVER", "crash")
	f, err := Run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "1 of 1 cells failed") {
		t.Fatalf("err = %v", err)
	}
	c := f.Find("crr-64/ringbuf/hash/rate=1")
	if c.OK() || !strings.Contains(c.Error, "exited before it was ready") || !strings.Contains(c.Error, "operation not permitted") {
		t.Errorf("cell error %q", c.Error)
	}
	if len(c.Warnings) == 0 || !strings.Contains(c.Warnings[0], "retried after") {
		t.Errorf("the failed run was not retried once: %v", c.Warnings)
	}
}

func TestMissingBinaryIsOneLine(t *testing.T) {
	cfg := fakeConfig(t, fastProfile)
	cfg.LoadgenBin = "bin/loadgen-does-not-exist"
	_, err := Run(context.Background(), cfg)
	if err == nil || err.Error() != "bin/loadgen-does-not-exist not found: run 'make build'" {
		t.Errorf("err = %v", err)
	}
	cfg = fakeConfig(t, fastProfile)
	cfg.Observer.Bin = "bin/nope"
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "bin/nope not found") {
		t.Errorf("err = %v", err)
	}
}

func TestPlanCollapsesAxesForExternalObservers(t *testing.T) {
	p, err := matrix.Parse("x", []byte(`
run: {duration: 1s, pairs: 1}
workloads: {w: {mode: crr, size: 64, concurrency: 1}}
groups: [{workloads: [w], transports: [ringbuf, perf], map_types: [hash, lru_hash], sample_rates: ["off", 1]}]`))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(Plan(p, Observer{Bin: "x"})); n != 5 {
		t.Errorf("own observer: %d cells, want 5", n)
	}
	cells := Plan(p, Observer{Cmd: "bpftrace -e 'tracepoint:sock:inet_sock_set_state { @n = count(); }'"})
	if len(cells) != 2 || cells[1].Key() != "w/external/external/rate=1" {
		t.Errorf("external plan: %v", cells)
	}
	if n := len(Plan(p, Observer{Cmd: "agent --transport {transport}"})); n != 3 {
		t.Errorf("external with {transport}: %d cells, want 3", n)
	}
}

func TestExternalObserverWithoutProgramsTimesOut(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to list BPF programs")
	}
	cfg := fakeConfig(t, strings.Replace(observedOnly, "health_timeout: 5s", "health_timeout: 1s", 1))
	cfg.Observer = Observer{Cmd: "sleep 30"}
	f, err := Run(context.Background(), cfg)
	if err == nil {
		t.Fatal("an observer that loads nothing was accepted")
	}
	if c := f.Find("crr-64/external/external/rate=1"); c == nil || !strings.Contains(c.Error, "no BPF programs of its own appeared") {
		t.Errorf("cell %+v", c)
	}
}

// Rounds interleave the cells: every cell's first pair runs before any
// cell's second, so a drift of the machine falls on all cells alike.
func TestCellsInterleaveByRound(t *testing.T) {
	cfg := fakeConfig(t, fastProfile)
	f, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	off, on := f.Find("crr-64/none/none/rate=off"), f.Find("crr-64/ringbuf/hash/rate=1")
	// the earliest and latest start of a cell's runs in one round
	span := func(c *results.Cell, pair int) (first, last time.Time) {
		for _, s := range append(append([]results.Sample{}, c.Baseline...), c.Observed...) {
			if s.Pair != pair {
				continue
			}
			if first.IsZero() || s.Start.Before(first) {
				first = s.Start
			}
			if s.Start.After(last) {
				last = s.Start
			}
		}
		return first, last
	}
	for _, a := range []*results.Cell{off, on} {
		for _, b := range []*results.Cell{off, on} {
			_, lastA := span(a, 0)
			firstB, _ := span(b, 1)
			if !lastA.Before(firstB) {
				t.Errorf("%s round 1 ran after %s round 2 began", a.Key, b.Key)
			}
		}
	}
	// Each round starts one cell further on: the cell that opened round 1
	// runs second in round 2.
	for pair, want := range []*results.Cell{off, on} {
		other := map[*results.Cell]*results.Cell{off: on, on: off}[want]
		w, _ := span(want, pair)
		o, _ := span(other, pair)
		if !w.Before(o) {
			t.Errorf("round %d did not open with %s", pair+1, want.Key)
		}
	}
}

// A cell left partial by an interrupted run keeps its pairs; resume runs
// only the missing ones.
func TestResumeContinuesPartialCell(t *testing.T) {
	cfg := fakeConfig(t, observedOnly)
	cfg.Profile.Run.Pairs = 2
	counter := filepath.Join(t.TempDir(), "clients")
	t.Setenv("BENCH_FAKE_COUNT", counter)
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	f, _ := results.Load(cfg.OutDir)
	c := &f.Cells[0]
	c.Status, c.Baseline, c.Observed = statusPartial, c.Baseline[:1], c.Observed[:1]
	if err := results.Save(cfg.OutDir, f); err != nil {
		t.Fatal(err)
	}
	os.Remove(counter)
	cfg.Resume = true
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(counter)
	if n := strings.Count(string(data), "\n"); n != 2 {
		t.Errorf("resume started %d clients, want 2 (the second pair only)", n)
	}
	f, _ = results.Load(cfg.OutDir)
	c = &f.Cells[0]
	if !c.OK() || len(c.Baseline) != 2 || len(c.Observed) != 2 || c.Observed[1].Pair != 1 || c.Observed[1].Seq != 2 {
		t.Errorf("after resume: status %s, %d/%d samples, second observed pair %d seq %d", c.Status, len(c.Baseline), len(c.Observed), c.Observed[1].Pair, c.Observed[1].Seq)
	}
}
