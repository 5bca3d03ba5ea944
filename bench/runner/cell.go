package runner

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"
	"syscall"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/measure/child"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/measure/probe"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/stats"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/bpfstats"
)

func numCPU() int { return runtime.NumCPU() }

type measurer struct {
	cfg         Config
	load        *probe.Cgroup // the load's cgroup; nil: CPU per op not measured
	nsPerIter   float64       // the inject arm's loop, calibrated once
	done, total int           // runs
	begun       time.Time
}

// statusPartial marks a cell whose rounds are not all measured yet.
const statusPartial = "partial"

// cellRun is a cell being measured across rounds.
type cellRun struct {
	cell   matrix.Cell
	rc     results.Cell
	failed bool
}

// withinTarget reports whether the cell's primary interval is at most
// target points on each side (after enough pairs for an interval at all).
func (cr *cellRun) withinTarget(target float64) bool {
	return len(cr.rc.Observed) >= stats.MinSignificant && cr.rc.CIHalfWidth <= target
}

func newCell(c matrix.Cell) results.Cell {
	rc := results.Cell{
		Key: c.Key(), Workload: c.Workload.Name, WorkloadSpec: c.Workload, Transport: c.Transport,
		MapType: c.MapType, SampleRate: c.SampleRate, BPFStats: c.BPFStats, FlushInterval: c.FlushInterval,
		MaxConnections: c.MaxConnections, Arm: c.Arm, Observer: c.Observer, Kernel: Kernel(),
		Start: time.Now().UTC(), Status: statusPartial, Baseline: []results.Sample{}, Observed: []results.Sample{},
	}
	if c.Observed() && c.BPFStats != matrix.StatsOn && bpfstats.Sysctl() == "1" {
		rc.Warnings = append(rc.Warnings, "kernel.bpf_stats_enabled=1 system-wide: this bpf_stats="+string(c.BPFStats)+" cell pays for statistics all the time")
	}
	return rc
}

// resolveLoads turns each open-loop workload's load fraction into a rate:
// the fraction of its saturation rate, measured here without an observer
// (the median of three closed-loop runs), or taken from a resumed run.
func (m *measurer) resolveLoads(ctx context.Context, file *results.File, cells []matrix.Cell) error {
	run := m.cfg.Profile.Run
	for i := range cells {
		w := &cells[i].Workload
		if w.Load <= 0 {
			continue
		}
		sat, ok := file.Meta.Saturation[w.Name]
		if !ok {
			closed := *w
			closed.Load, closed.Rate = 0, 0
			srv, err := startServer(ctx, m.cfg.LoadgenBin, closed, m.load)
			if err != nil {
				return err
			}
			var rates []float64
			for k := 0; k < 3; k++ {
				if err := child.Sleep(ctx, run.Settle.D()); err != nil {
					srv.stop()
					return err
				}
				lg, err := runClient(ctx, m.cfg.LoadgenBin, srv.addr, closed, m.load, run.Warmup.D(), run.Duration.D(), nil)
				if err != nil {
					srv.stop()
					return fmt.Errorf("saturation of %s: %w", w.Name, err)
				}
				rates = append(rates, lg.OpsPerSec)
			}
			srv.stop()
			sat = stats.Median(rates)
			if file.Meta.Saturation == nil {
				file.Meta.Saturation = map[string]float64{}
			}
			file.Meta.Saturation[w.Name] = sat
			fmt.Fprintf(m.cfg.Log, "saturation of %s: %.0f ops/s (median of %v); offering %.0f%%: %.0f ops/s\n",
				w.Name, sat, roundAll(rates), 100*w.Load, w.Load*sat)
		}
		w.Rate = int(math.Round(w.Load * sat))
	}
	return nil
}

func roundAll(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = math.Round(x)
	}
	return out
}

// roundOrder is the order of n arms in a round: a permutation drawn from
// a seed of the workload and the round, so a run repeats exactly. Not a
// rotation: rotating keeps every arm behind the same neighbour, and what
// runs just before an arm biases it (with rounds rotated, the A/A of two copies of
// one observer in results/gate flagged 57% of simulated runs on CPU per
// operation and 47% on throughput).
func roundOrder(n, round int, workload string) []int {
	h := uint64(14695981039346656037)
	for _, b := range []byte(workload) {
		h = (h ^ uint64(b)) * 1099511628211
	}
	rng := rand.New(rand.NewPCG(h, uint64(round)))
	return rng.Perm(n)
}

// measureRound runs one round of workload g: its baseline and every active
// cell's arm once, against one loadgen server, in an order drawn for the
// round (roundOrder). A failed arm is retried once; a cell whose arm fails twice leaves
// the run, a baseline that fails twice fails the round's cells.
func (m *measurer) measureRound(ctx context.Context, g *workloadRounds, round int) {
	arms := []*cellRun{nil}
	for _, cr := range g.active() {
		if len(cr.rc.Observed) <= round { // a resumed cell may have it already
			arms = append(arms, cr)
		}
	}
	order := make([]*cellRun, len(arms))
	for i, k := range roundOrder(len(arms), round, g.name) {
		order[i] = arms[k]
	}
	fail := func(crs []*cellRun, err error) {
		for _, cr := range crs {
			cr.failed, cr.rc.Status, cr.rc.Error = true, "failed", err.Error()
			fmt.Fprintf(m.cfg.Log, "%s FAILED: %s\n", cr.cell.Key(), err)
		}
	}
	srv, err := startServer(ctx, m.cfg.LoadgenBin, g.cells[0].cell.Workload, m.load)
	if err != nil {
		fail(g.active(), err)
		return
	}
	defer func() {
		if err := srv.stop(); err != nil && !srv.proc.KilledBy(syscall.SIGTERM) {
			for _, cr := range g.cells {
				cr.rc.Warnings = append(cr.rc.Warnings, "loadgen server: "+err.Error())
			}
		}
	}()
	var base *results.Sample
	got := map[*cellRun]results.Sample{}
	for seq, cr := range order {
		c := matrix.Cell{Workload: g.cells[0].cell.Workload}
		name := "baseline"
		if cr != nil {
			c, name = cr.cell, cr.cell.Key()
		}
		m.progress(g, round, seq, len(order), name)
		s, warns, err := m.runArm(ctx, c, srv.addr)
		if err != nil && ctx.Err() == nil {
			// one retry: a single bad run (a stalled client on a loaded
			// machine) should not cost the whole cell; it is recorded
			warns = append(warns, fmt.Sprintf("round %d %s: retried after: %v", round+1, name, err))
			var more []string
			s, more, err = m.runArm(ctx, c, srv.addr)
			warns = append(warns, more...)
		}
		m.done++
		if s.Loadgen.Errors > 0 {
			warns = append(warns, fmt.Sprintf("round %d %s: loadgen reported %v errors", round+1, name, s.Loadgen.Errors))
		}
		s.Pair, s.Seq = round, seq
		if cr == nil {
			for _, other := range arms[1:] {
				other.rc.Warnings = append(other.rc.Warnings, warns...)
			}
			if err != nil {
				fail(arms[1:], fmt.Errorf("round %d baseline: %w", round+1, err))
				return
			}
			base = &s
			continue
		}
		cr.rc.Warnings = append(cr.rc.Warnings, warns...)
		if err != nil {
			fail([]*cellRun{cr}, fmt.Errorf("round %d: %w", round+1, err))
			continue
		}
		got[cr] = s
	}
	g.rounds = round + 1
	for cr, s := range got {
		if cr.failed || base == nil {
			continue
		}
		cr.rc.Baseline = append(cr.rc.Baseline, *base)
		cr.rc.Observed = append(cr.rc.Observed, s)
	}
}

// runArm is one run: [observer or bench's programs started, healthy] →
// settle → warm-up → measured window → [accounting run]. The probe window
// opens when the warm-up ends and closes when the client exits.
func (m *measurer) runArm(ctx context.Context, c matrix.Cell, target string) (s results.Sample, warnings []string, err error) {
	run := m.cfg.Profile.Run
	var obs *runningObserver
	if c.LoadsPrograms() {
		if obs, err = startObserver(ctx, m.observer(c), c, run, m.nsPerIter); err != nil {
			return s, nil, err
		}
		defer func() { warnings = append(warnings, obs.stop()...) }()
	}
	if n := c.Workload.Hold; n > 0 {
		h, err := startHold(ctx, m.cfg.LoadgenBin, n)
		if err != nil {
			return s, warnings, err
		}
		defer func() {
			if err := h.stop(); err != nil {
				warnings = append(warnings, "loadgen hold: "+err.Error())
			}
		}()
		if err := child.Sleep(ctx, holdSettle(c)); err != nil {
			return s, warnings, err
		}
	}
	// the same idle gap before every run of every arm: a run after idle
	// time is slower here, and the observer's start-up must not decide that.
	// The observer's CPU over the gap is its cost at rest.
	var rest restWindow
	var restCPU, restWall int64
	if obs != nil {
		rest = obs.beginRest()
	}
	if err := child.Sleep(ctx, run.Settle.D()); err != nil {
		return results.Sample{}, warnings, err
	}
	if obs != nil {
		restCPU, restWall = obs.endRest(rest)
	}
	var before snapshot
	var metrics *probe.Metrics
	if obs != nil {
		metrics = obs.scrape(ctx)
	}
	var loadCPU, loadSys, busy int64
	var opened time.Time
	lg, err := runClient(ctx, m.cfg.LoadgenBin, target, c.Workload, m.load, run.Warmup.D(), run.Duration.D(), func() {
		s.Start, opened = time.Now().UTC(), time.Now()
		loadCPU, loadSys = m.loadCPU()
		busy = probe.MachineBusyNs()
		if obs != nil {
			before = obs.snapshot()
		}
	})
	if err != nil {
		return s, warnings, err
	}
	s.Loadgen = lg
	s.WindowNs = int64(time.Since(opened))
	if m.load != nil {
		total, sys := m.loadCPU()
		s.LoadCPUNs, s.LoadSysNs = total-loadCPU, sys-loadSys
	}
	s.MachineBusyNs = probe.MachineBusyNs() - busy
	if obs == nil {
		return s, warnings, nil
	}
	after := obs.snapshot()
	before.metrics, after.metrics = metrics, obs.scrape(ctx)
	s.Probe = obs.window(before, after)
	s.Probe.AgentRestCPUNs, s.Probe.RestNs = restCPU, restWall
	if run.Accounting > 0 {
		a, err := m.account(ctx, obs, c, target)
		if err != nil {
			warnings = append(warnings, "accounting run: "+err.Error())
		}
		s.Accounting = a
	}
	if obs.exited() {
		return s, warnings, fmt.Errorf("observer died during the measured window: %v: %s", obs.proc.ExitErr(), child.LastLine(obs.proc.Tail()))
	}
	return s, warnings, nil
}

// account times the arm's programs over a short run with the kernel's
// statistics on: exact runs per operation and ns per run, kept out of the
// measured window, where the statistics would add their own cost.
func (m *measurer) account(ctx context.Context, obs *runningObserver, c matrix.Cell, target string) (*results.Accounting, error) {
	hold, err := bpfstats.Enable()
	if err != nil {
		return nil, fmt.Errorf("enable BPF statistics: %v (run as root)", err)
	}
	defer hold.Close()
	before := probe.ProgramStats(obs.progIDs)
	lg, err := runClient(ctx, m.cfg.LoadgenBin, target, c.Workload, m.load, 0, m.cfg.Profile.Run.Accounting.D(), nil)
	if err != nil {
		return nil, err
	}
	after := probe.ProgramStats(obs.progIDs)
	return &results.Accounting{Ops: lg.Ops, Programs: diffPrograms(before, after)}, nil
}

func diffPrograms(a, b map[uint32]probe.ProgStat) []results.Program {
	var out []results.Program
	for id, end := range b {
		begin := a[id]
		out = append(out, results.Program{ID: id, Name: end.Name,
			RunTimeNs: end.RunTimeNs - begin.RunTimeNs, RunCount: end.RunCount - begin.RunCount})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (m *measurer) loadCPU() (total, system int64) {
	if m.load == nil {
		return 0, 0
	}
	return m.load.Usage()
}

// observer is the observer a cell's arm runs.
func (m *measurer) observer(c matrix.Cell) Observer {
	for _, o := range m.cfg.Observers {
		if o.Name == c.Observer {
			return o
		}
	}
	return m.cfg.Observers[0]
}

func (m *measurer) progress(g *workloadRounds, round, seq, arms int, name string) {
	eta := "?"
	if m.done > 0 && m.total > m.done {
		per := time.Since(m.begun) / time.Duration(m.done)
		eta = (per * time.Duration(m.total-m.done)).Round(time.Second).String()
	} else if m.done >= m.total {
		eta = "past the profile's pairs: CI target"
	}
	fmt.Fprintf(m.cfg.Log, "[round %d/%d] %s arm %d/%d %s … ETA %s\n",
		round+1, m.cfg.Profile.Run.Pairs, g.name, seq+1, arms, name, eta)
}
