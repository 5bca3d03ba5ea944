// Package runner measures a profile's cells. It goes round by round: in
// each round every workload runs its baseline (no observer) and the arm of
// each of its cells once, in an order drawn afresh every round (seeded), with the
// same settle gap and warm-up before every run, an observer started fresh
// for every arm that runs one and stopped with SIGTERM after. A cell's
// figures are paired with the baseline of its own round, so every cell of a
// workload is compared with the same baselines and with each other: two
// observers, or an observer with and without an injected cost, are a paired
// comparison in one run, not two runs from different days. Interleaving the
// workloads spreads a slow drift of the machine over all of them.
// results.json is rewritten after each round of a workload, so an
// interrupted run keeps what it measured and --resume continues it.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/measure/probe"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/synth"
)

// Config is one `bench run`.
type Config struct {
	Profile    *matrix.Profile
	OutDir     string
	LoadgenBin string
	// Observers are measured side by side; with more than one, each has a
	// name and every observed cell is repeated for each.
	Observers []Observer
	Resume    bool
	Log       io.Writer // progress lines
	Command   []string  // recorded in meta
	// CITarget, when > 0, adds rounds past the profile's pairs until every
	// cell's primary interval is at most this many points on each side, or
	// MaxTime since the start is spent.
	CITarget float64
	MaxTime  time.Duration
	// AfterRound is called after each round is saved (e.g. to refresh the
	// report).
	AfterRound func(*results.File)
	// now is the clock of the time budget (nil: time.Now); tests inject one.
	now func() time.Time
}

// ErrCellsFailed is returned (wrapped) when some cells could not be measured.
var ErrCellsFailed = errors.New("cells failed")

// CheckBinary returns a one-line error when bin is not an executable file.
func CheckBinary(bin string) error {
	st, err := os.Stat(bin)
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("%s not found: run 'make build'", bin)
	}
	return nil
}

// Plan returns the cells to measure. An external observer command without a
// {transport} or {map_type} placeholder cannot vary that axis, so the axis
// collapses to "external" and duplicate cells are dropped. With several
// observers, every cell that runs one is repeated for each, by name.
func Plan(p *matrix.Profile, observers []Observer) []matrix.Cell {
	var out []matrix.Cell
	seen := map[string]bool{}
	add := func(c matrix.Cell) {
		if !seen[c.Key()] {
			seen[c.Key()] = true
			out = append(out, c)
		}
	}
	for _, c := range p.Cells() {
		if !c.Observed() {
			add(c)
			continue
		}
		for _, o := range observers {
			oc := c
			if len(observers) > 1 {
				oc.Observer = o.Name
			}
			if o.External() {
				if !strings.Contains(o.Cmd, "{transport}") {
					oc.Transport = "external"
				}
				if !strings.Contains(o.Cmd, "{map_type}") {
					oc.MapType = "external"
				}
			}
			add(oc)
		}
	}
	return out
}

// workloadRounds is one workload's cells, measured round by round around
// one shared baseline.
type workloadRounds struct {
	name   string
	cells  []*cellRun
	rounds int           // rounds completed
	took   time.Duration // the last round's wall time
}

func (w *workloadRounds) active() []*cellRun {
	var out []*cellRun
	for _, cr := range w.cells {
		if !cr.failed {
			out = append(out, cr)
		}
	}
	return out
}

// Run measures every cell not already completed in OutDir (with Resume).
func Run(ctx context.Context, cfg Config) (*results.File, error) {
	if len(cfg.Observers) == 0 {
		return nil, errors.New("no observer to measure")
	}
	cells := Plan(cfg.Profile, cfg.Observers)
	if err := CheckBinary(cfg.LoadgenBin); err != nil {
		return nil, err
	}
	for _, o := range cfg.Observers {
		if !o.External() && needsObserver(cells) {
			if err := CheckBinary(o.Bin); err != nil {
				return nil, err
			}
		}
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	file, err := open(cfg, cells)
	if err != nil {
		return nil, err
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	m := &measurer{cfg: cfg, begun: cfg.now()}
	if cg, err := probe.NewCgroup(fmt.Sprintf("ebpf-net-obs-bench-%d", os.Getpid())); err != nil {
		fmt.Fprintf(cfg.Log, "warning: %v: CPU per operation not measured\n", err)
	} else {
		m.load = cg
		defer cg.Close()
	}
	for _, c := range cells {
		if (c.Arm == matrix.ArmInject || m.observer(c).InjectNs > 0) && c.Observed() && m.nsPerIter == 0 {
			how := "on inet_sock_set_state, statistics on"
			if m.nsPerIter, err = synth.CalibrateOnHook(); err != nil {
				fmt.Fprintf(cfg.Log, "warning: %v; calibrating under BPF_PROG_TEST_RUN instead\n", err)
				how = "BPF_PROG_TEST_RUN"
				if m.nsPerIter, err = synth.Calibrate(); err != nil {
					return file, fmt.Errorf("calibrate the injected cost: %w", err)
				}
			}
			file.Meta.InjectNsPerIteration = m.nsPerIter
			fmt.Fprintf(cfg.Log, "injected cost: %.3f ns per loop iteration (%s)\n", m.nsPerIter, how)
		}
	}
	if err := m.resolveLoads(ctx, file, cells); err != nil {
		return file, err
	}
	groups := m.plan(file, cells)
	if err := results.Save(cfg.OutDir, file); err != nil {
		return nil, err
	}
	pairs := cfg.Profile.Run.Pairs
	for _, g := range groups {
		m.total += (pairs - min(g.rounds, pairs)) * (1 + len(g.active()))
	}
	for round := 0; ; round++ {
		ran := false
		for k := range groups {
			g := groups[(k+round)%len(groups)]
			if g.rounds > round || len(g.active()) == 0 || !m.wantsRound(g, round) {
				continue
			}
			ran = true
			begun := cfg.now()
			m.measureRound(ctx, g, round)
			g.took = cfg.now().Sub(begun)
			file.Meta.End = time.Now().UTC()
			for _, cr := range g.cells {
				cr.rc.End = file.Meta.End
				file.Put(cr.rc)
			}
			file.Summarize()
			if err := results.Save(cfg.OutDir, file); err != nil {
				return file, err
			}
			if ctx.Err() != nil {
				return file, fmt.Errorf("interrupted in round %d (continue with --resume): %w", round+1, ctx.Err())
			}
			m.refresh(file, g)
		}
		if cfg.AfterRound != nil && ran {
			cfg.AfterRound(file)
		}
		if !ran && round >= pairs {
			break
		}
	}
	failed := 0
	for _, g := range groups {
		for _, cr := range g.cells {
			if cr.failed {
				failed++
				continue
			}
			cr.rc.Status = "ok"
			file.Put(cr.rc)
			for _, w := range cr.rc.Warnings {
				fmt.Fprintf(cfg.Log, "%s: warning: %s\n", cr.cell.Key(), w)
			}
		}
	}
	file.Summarize()
	if err := results.Save(cfg.OutDir, file); err != nil {
		return file, err
	}
	if failed > 0 {
		return file, fmt.Errorf("%d of %d %w (see %s/results.json)", failed, len(cells), ErrCellsFailed, cfg.OutDir)
	}
	return file, nil
}

// MaxRoundsFactor bounds a --ci-target run without --max-time: at most
// this many times the profile's pairs.
const MaxRoundsFactor = 10

// wantsRound decides whether workload g runs round r: every workload runs
// the profile's pairs; past them, with a CI target, one whose cells are not
// all within it runs another round if the time budget has room for it (no
// budget: up to MaxRoundsFactor times the pairs).
func (m *measurer) wantsRound(g *workloadRounds, r int) bool {
	pairs := m.cfg.Profile.Run.Pairs
	if r < pairs {
		return true
	}
	if m.cfg.CITarget <= 0 {
		return false
	}
	if m.cfg.MaxTime > 0 && m.cfg.now().Sub(m.begun)+g.took > m.cfg.MaxTime {
		return false
	}
	if m.cfg.MaxTime <= 0 && r >= MaxRoundsFactor*pairs {
		return false
	}
	for _, cr := range g.active() {
		if !cr.withinTarget(m.cfg.CITarget) {
			return true
		}
	}
	return false
}

// refresh copies the summarized cells back into g's runs.
func (m *measurer) refresh(f *results.File, g *workloadRounds) {
	for _, cr := range g.cells {
		if c := f.Find(cr.rc.Key); c != nil {
			cr.rc = *c
		}
	}
}

// plan groups the cells by workload, in the order the profile lists them,
// taking over what an earlier run in OutDir measured (with --resume).
func (m *measurer) plan(file *results.File, cells []matrix.Cell) []*workloadRounds {
	var groups []*workloadRounds
	byName := map[string]*workloadRounds{}
	for _, c := range cells {
		g := byName[c.Workload.Name]
		if g == nil {
			g = &workloadRounds{name: c.Workload.Name, rounds: -1}
			byName[c.Workload.Name] = g
			groups = append(groups, g)
		}
		cr := &cellRun{cell: c, rc: newCell(c)}
		if done := file.Find(c.Key()); done != nil && len(done.Baseline) == len(done.Observed) && done.Status != "failed" {
			cr.rc = *done
			cr.rc.Status = statusPartial
		}
		g.cells = append(g.cells, cr)
		if n := len(cr.rc.Observed); g.rounds < 0 || n < g.rounds {
			g.rounds = n
		}
	}
	for _, g := range groups {
		if g.rounds > 0 {
			fmt.Fprintf(m.cfg.Log, "resume: %s has %d rounds in %s\n", g.name, g.rounds, m.cfg.OutDir)
		}
	}
	return groups
}

func needsObserver(cells []matrix.Cell) bool {
	for _, c := range cells {
		if c.Observed() {
			return true
		}
	}
	return false
}

func open(cfg Config, cells []matrix.Cell) (*results.File, error) {
	if cfg.Resume {
		if f, err := results.Load(cfg.OutDir); err == nil {
			if f.Meta.Profile != cfg.Profile.Name {
				return nil, fmt.Errorf("--resume: %s holds profile %q, not %q", cfg.OutDir, f.Meta.Profile, cfg.Profile.Name)
			}
			f.Meta.Resumed = append(f.Meta.Resumed, time.Now().UTC())
			return f, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	host, _ := os.Hostname()
	ids, _ := probe.ProgramIDs()
	var cost *results.StatsCost
	if needsObserver(cells) {
		if c, err := probe.MeasureStatsCost(); err != nil {
			cost = &results.StatsCost{Note: "not measured: " + err.Error()}
		} else {
			cost = &results.StatsCost{OffNsPerRun: c.OffNsPerRun, OnNsPerRun: c.OnNsPerRun, AddedNsPerRun: c.AddedNsPerRun, Note: c.Note}
		}
	}
	var names []string
	for _, o := range cfg.Observers {
		names = append(names, o.String())
	}
	return &results.File{Meta: results.Meta{BPFStatsCost: cost,
		Kernel: Kernel(), Profile: cfg.Profile.Name, Commit: Commit(), CPUs: numCPU(), CPUModel: cpuModel(),
		Start: time.Now().UTC(), GoVersion: goVersion(), Command: cfg.Command, Hostname: host,
		LoadAvgAtStart: loadAvg(), ForeignBPFProg: len(ids), Observer: strings.Join(names, "; "),
		Loadgen: cfg.LoadgenBin, Run: cfg.Profile.Run, CITarget: cfg.CITarget, FloorOf: synth.FloorOf,
	}, Cells: []results.Cell{}}, nil
}
