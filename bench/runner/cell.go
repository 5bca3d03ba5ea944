package runner

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/bpfstats"
)

func numCPU() int { return runtime.NumCPU() }

type measurer struct {
	cfg                  Config
	cellIndex, cellCount int
	done, total          int // runs
	begun                time.Time
}

// statusPartial marks a cell whose rounds are not all measured yet.
const statusPartial = "partial"

// cellRun is a cell being measured across rounds.
type cellRun struct {
	cell     matrix.Cell
	rc       results.Cell
	finished bool
}

func newCell(c matrix.Cell) results.Cell {
	rc := results.Cell{
		Key: c.Key(), Workload: c.Workload.Name, WorkloadSpec: c.Workload, Transport: c.Transport,
		MapType: c.MapType, SampleRate: c.SampleRate, BPFStats: c.BPFStats, Kernel: Kernel(),
		Start: time.Now().UTC(), Status: statusPartial, Baseline: []results.Sample{}, Observed: []results.Sample{},
	}
	if c.Observed() && c.BPFStats != matrix.StatsOn && bpfstats.Sysctl() == "1" {
		rc.Warnings = append(rc.Warnings, "kernel.bpf_stats_enabled=1 system-wide: this bpf_stats="+string(c.BPFStats)+" cell pays for statistics all the time")
	}
	return rc
}

// measurePair runs one baseline and one observed run of cr against a fresh
// loadgen server: baseline first in even pairs, observed first in odd ones
// (ABBA cancels a linear drift within the cell).
func (m *measurer) measurePair(ctx context.Context, cr *cellRun, pair int) (err error) {
	c, rc := cr.cell, &cr.rc
	srv, err := startServer(ctx, m.cfg.LoadgenBin)
	if err != nil {
		m.done += 2
		return err
	}
	defer func() {
		if err := srv.stop(); err != nil && !srv.proc.killedBy(syscall.SIGTERM) {
			rc.Warnings = append(rc.Warnings, "loadgen server: "+err.Error())
		}
	}()
	arms := []bool{false, true}
	if pair%2 == 1 {
		arms = []bool{true, false}
	}
	for i, observedArm := range arms {
		m.progress(c, pair, observedArm)
		s, warns, err := m.runArm(ctx, c, srv.addr, observedArm)
		if err != nil && ctx.Err() == nil {
			// one retry: a single bad run (a stalled client on a loaded
			// machine) should not cost the whole cell; it is recorded
			rc.Warnings = append(rc.Warnings, warns...)
			rc.Warnings = append(rc.Warnings, fmt.Sprintf("pair %d %s: retried after: %v", pair+1, armName(observedArm), err))
			s, warns, err = m.runArm(ctx, c, srv.addr, observedArm)
		}
		m.done++
		rc.Warnings = append(rc.Warnings, warns...)
		if err != nil {
			m.done += len(arms) - i - 1
			return fmt.Errorf("pair %d %s: %w", pair+1, armName(observedArm), err)
		}
		s.Pair, s.Seq = pair, 2*pair+i
		if s.Loadgen.Errors > 0 {
			rc.Warnings = append(rc.Warnings, fmt.Sprintf("pair %d %s: loadgen reported %v errors", pair+1, armName(observedArm), s.Loadgen.Errors))
		}
		if observedArm {
			rc.Observed = append(rc.Observed, s)
		} else {
			rc.Baseline = append(rc.Baseline, s)
		}
	}
	return nil
}

func armName(observed bool) string {
	if observed {
		return "observed"
	}
	return "baseline"
}

// runArm is one run: [observer start, healthy] → settle → warm-up → measured
// window. The probe window opens when the warm-up ends and closes when the
// client exits.
func (m *measurer) runArm(ctx context.Context, c matrix.Cell, target string, observedArm bool) (s results.Sample, warnings []string, err error) {
	run := m.cfg.Profile.Run
	var obs *runningObserver
	if observedArm && c.Observed() {
		if obs, err = startObserver(ctx, m.cfg.Observer, c, run.HealthTimeout.D()); err != nil {
			return s, nil, err
		}
		defer func() { warnings = append(warnings, obs.stop(m.cfg.Observer.external())...) }()
	}
	// the same idle gap before every run of both arms: a run after idle
	// time is slower here, and the observer's start-up must not decide that.
	// The observer's CPU over the gap is its cost at rest.
	var rest restWindow
	var restCPU, restWall int64
	if obs != nil {
		rest = obs.beginRest()
	}
	if err := sleep(ctx, run.Settle.D()); err != nil {
		return results.Sample{}, warnings, err
	}
	if obs != nil {
		restCPU, restWall = obs.endRest(rest)
	}
	var before snapshot
	var lg results.Loadgen
	if obs != nil {
		before.metrics = obs.scrape(ctx)
	}
	lg, err = runClient(ctx, m.cfg.LoadgenBin, target, c.Workload, run.Warmup.D(), run.Duration.D(), func() {
		s.Start = time.Now().UTC()
		if obs != nil {
			metrics := before.metrics
			before = obs.snapshot()
			before.metrics = metrics
		}
	})
	if err != nil {
		return s, warnings, err
	}
	s.Loadgen = lg
	if obs != nil {
		after := obs.snapshot()
		after.metrics = obs.scrape(ctx)
		s.Probe = obs.window(before, after)
		s.Probe.AgentRestCPUNs, s.Probe.RestNs = restCPU, restWall
		if obs.proc.exited() {
			return s, warnings, fmt.Errorf("observer died during the measured window: %v: %s", obs.proc.exitErr(), lastLine(obs.proc.tail()))
		}
	}
	return s, warnings, nil
}

func (m *measurer) progress(c matrix.Cell, pair int, observedArm bool) {
	eta := "?"
	if m.done > 0 {
		per := time.Since(m.begun) / time.Duration(m.done)
		eta = (per * time.Duration(m.total-m.done)).Round(time.Second).String()
	}
	stats := ""
	if c.BPFStats != matrix.StatsSampled {
		stats = " bpf_stats=" + string(c.BPFStats)
	}
	fmt.Fprintf(m.cfg.Log, "[cell %d/%d] %s %s %s rate=%s%s pair %d/%d %s … ETA %s\n",
		m.cellIndex, m.cellCount, c.Workload.Name, c.Transport, c.MapType, c.SampleRate, stats,
		pair+1, m.cfg.Profile.Run.Pairs, armName(observedArm), eta)
}
