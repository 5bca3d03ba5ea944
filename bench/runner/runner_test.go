package runner

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/stats"
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
	return Config{Profile: p, OutDir: t.TempDir(), LoadgenBin: self, Observers: []Observer{{Bin: self}},
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
		// every round runs each arm once, in the order roundOrder draws
		for r := 0; r < 2; r++ {
			order := roundOrder(3, r, "crr-64")
			if c.Baseline[r].Seq != slices.Index(order, 0) {
				t.Errorf("%s: baseline at place %d of round %d, want %d (order %v)", c.Key, c.Baseline[r].Seq, r+1, slices.Index(order, 0), order)
			}
		}
	}
	off, on := onDisk.Find("crr-64/none/none/rate=off"), onDisk.Find("crr-64/ringbuf/hash/rate=1")
	if off == nil || on == nil {
		t.Fatal("cells missing")
	}
	// both cells are paired with the same baseline run of each round
	for i := range off.Baseline {
		if !off.Baseline[i].Start.Equal(on.Baseline[i].Start) || off.Observed[i].Start.Equal(on.Observed[i].Start) {
			t.Errorf("round %d: the cells do not share one baseline, or share an arm", i+1)
		}
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
	first := clients() // 1 round: the baseline and 2 arms
	if first != 3 {
		t.Fatalf("first run started %d clients, want 3", first)
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
		t.Errorf("resume started %d clients, want 2 (a baseline and the unfinished cell)", got)
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
	cfg.Observers[0].Bin = "bin/nope"
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
	if n := len(Plan(p, []Observer{{Bin: "x"}})); n != 5 {
		t.Errorf("own observer: %d cells, want 5", n)
	}
	cells := Plan(p, []Observer{{Cmd: "bpftrace -e 'tracepoint:sock:inet_sock_set_state { @n = count(); }'"}})
	if len(cells) != 2 || cells[1].Key() != "w/external/external/rate=1" {
		t.Errorf("external plan: %v", cells)
	}
	if n := len(Plan(p, []Observer{{Cmd: "agent --transport {transport}"}})); n != 3 {
		t.Errorf("external with {transport}: %d cells, want 3", n)
	}
	// two observers: every observed cell once for each, named; the A/A once
	var keys []string
	for _, c := range Plan(p, []Observer{{Name: "old", Bin: "a"}, {Name: "new", Bin: "b"}}) {
		keys = append(keys, c.Key())
	}
	if len(keys) != 9 || keys[0] != "w/none/none/rate=off" || keys[1] != "w/ringbuf/hash/rate=1/observer=old" || keys[2] != "w/ringbuf/hash/rate=1/observer=new" {
		t.Errorf("two observers: %v", keys)
	}
}

func TestExternalObserverWithoutProgramsTimesOut(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to list BPF programs")
	}
	cfg := fakeConfig(t, strings.Replace(observedOnly, "health_timeout: 5s", "health_timeout: 1s", 1))
	cfg.Observers = []Observer{{Cmd: "sleep 30"}}
	f, err := Run(context.Background(), cfg)
	if err == nil {
		t.Fatal("an observer that loads nothing was accepted")
	}
	if c := f.Find("crr-64/external/external/rate=1"); c == nil || !strings.Contains(c.Error, "no BPF programs of its own appeared") {
		t.Errorf("cell %+v", c)
	}
}

// Rounds interleave the workloads: every workload's first round runs
// before any workload's second, so a drift of the machine falls on all
// cells alike; and each round starts one workload further on.
func TestWorkloadsInterleaveByRound(t *testing.T) {
	cfg := fakeConfig(t, `
run: {duration: 60ms, warmup: 20ms, settle: 10ms, pairs: 2, health_timeout: 5s}
workloads: {a: {mode: crr, size: 64, concurrency: 1}, b: {mode: rr, size: 64, concurrency: 1}}
groups:
  - {workloads: [a, b], transports: [ringbuf], map_types: [hash], sample_rates: [1]}
`)
	f, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, b := f.Find("a/ringbuf/hash/rate=1"), f.Find("b/ringbuf/hash/rate=1")
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
	for _, x := range []*results.Cell{a, b} {
		for _, y := range []*results.Cell{a, b} {
			_, lastX := span(x, 0)
			firstY, _ := span(y, 1)
			if !lastX.Before(firstY) {
				t.Errorf("%s round 1 ran after %s round 2 began", x.Key, y.Key)
			}
		}
	}
	for pair, want := range []*results.Cell{a, b} {
		other := map[*results.Cell]*results.Cell{a: b, b: a}[want]
		w, _ := span(want, pair)
		o, _ := span(other, pair)
		if !w.Before(o) {
			t.Errorf("round %d did not open with %s", pair+1, want.Key)
		}
	}
}

// Two observers in one run: every round measures both on the same
// baseline, so compare pairs them by round.
func TestObserversShareRounds(t *testing.T) {
	cfg := fakeConfig(t, observedOnly)
	cfg.Profile.Run.Pairs = 2
	self := cfg.Observers[0].Bin
	cfg.Observers = []Observer{{Name: "old", Bin: self}, {Name: "new", Bin: self}}
	f, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	o, n := f.Find("crr-64/ringbuf/hash/rate=1/observer=old"), f.Find("crr-64/ringbuf/hash/rate=1/observer=new")
	if o == nil || n == nil || !o.OK() || !n.OK() || o.Observer != "old" {
		t.Fatalf("cells %+v %+v", o, n)
	}
	for i := range o.Baseline {
		if !o.Baseline[i].Start.Equal(n.Baseline[i].Start) || o.Observed[i].Pair != n.Observed[i].Pair {
			t.Errorf("round %d: not paired on one baseline", i+1)
		}
	}
}

// --ci-target adds rounds past the profile's pairs until the interval is
// narrow enough or the time budget is spent; a reachable target adds none.
// The budget runs on an injected clock that moves 1 s each time it is read.
func TestCITargetAddsRoundsWithinBudget(t *testing.T) {
	run := func(pairs int, target float64, budget time.Duration) int {
		cfg := fakeConfig(t, observedOnly)
		cfg.Profile.Run.Pairs = pairs
		cfg.CITarget, cfg.MaxTime = target, budget
		var tick time.Time
		cfg.now = func() time.Time { tick = tick.Add(time.Second); return tick }
		f, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return len(f.Cells[0].Observed)
	}
	pairs := stats.MinSignificant
	if n := run(pairs, 1000, time.Hour); n != pairs {
		t.Errorf("a target met at the profile's pairs: %d rounds, want %d", n, pairs)
	}
	// every round reads the clock at least twice: a 30 s budget has room
	// for more rounds than the profile's, and for at most 15
	if n := run(pairs, 1e-9, 30*time.Second); n <= pairs || n > 15 {
		t.Errorf("an unmet target within 30 s of the clock: %d rounds, want %d < n <= 15", n, pairs)
	}
	if n := run(1, 1e-9, 0); n != MaxRoundsFactor {
		t.Errorf("an unmet target without a budget: %d rounds, want %d", n, MaxRoundsFactor)
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
	if !c.OK() || len(c.Baseline) != 2 || len(c.Observed) != 2 || c.Observed[1].Pair != 1 || c.Observed[1].Seq != slices.Index(roundOrder(2, 1, "crr-64"), 1) {
		t.Errorf("after resume: status %s, %d/%d samples, second observed pair %d seq %d", c.Status, len(c.Baseline), len(c.Observed), c.Observed[1].Pair, c.Observed[1].Seq)
	}
}

// Over the rounds of a run every arm follows several different arms, and
// every arm takes every place: what ran just before an arm, or its place,
// cannot bias it the same way every round.
func TestRoundOrderVariesNeighbours(t *testing.T) {
	const arms, rounds = 5, 16
	before := map[int]map[int]bool{}
	place := map[int]map[int]bool{}
	for r := 0; r < rounds; r++ {
		order := roundOrder(arms, r, "crr-64")
		if got := slices.Sorted(slices.Values(order)); !slices.Equal(got, []int{0, 1, 2, 3, 4}) {
			t.Fatalf("round %d: %v is not a permutation", r, order)
		}
		for i, a := range order {
			if place[a] == nil {
				place[a], before[a] = map[int]bool{}, map[int]bool{}
			}
			place[a][i] = true
			if i > 0 {
				before[a][order[i-1]] = true
			}
		}
	}
	for a := 0; a < arms; a++ {
		if len(before[a]) < 3 || len(place[a]) < 4 {
			t.Errorf("arm %d: after %d different arms, at %d different places in %d rounds", a, len(before[a]), len(place[a]), rounds)
		}
	}
	if !slices.Equal(roundOrder(arms, 3, "crr-64"), roundOrder(arms, 3, "crr-64")) {
		t.Error("the order is not reproducible")
	}
}
