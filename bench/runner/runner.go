// Package runner measures a profile's cells: for each cell it starts a
// loadgen server, then runs baseline (A) and observed (B) arms in ABBA order
// with the same settle gap and warm-up before every run, starting the
// observer fresh for every observed run and stopping it with SIGTERM after.
// results.json is rewritten after each cell, so an interrupted run keeps
// what it measured and --resume continues it.
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
)

// Config is one `bench run`.
type Config struct {
	Profile    *matrix.Profile
	OutDir     string
	LoadgenBin string
	Observer   Observer
	Resume     bool
	Log        io.Writer // progress lines
	Command    []string  // recorded in meta
	// AfterCell is called after each cell is saved (e.g. to refresh the report).
	AfterCell func(*results.File)
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
// collapses to "external" and duplicate cells are dropped.
func Plan(p *matrix.Profile, o Observer) []matrix.Cell {
	cells := p.Cells()
	if !o.external() {
		return cells
	}
	var out []matrix.Cell
	seen := map[string]bool{}
	for _, c := range cells {
		if c.Observed() {
			if !strings.Contains(o.Cmd, "{transport}") {
				c.Transport = "external"
			}
			if !strings.Contains(o.Cmd, "{map_type}") {
				c.MapType = "external"
			}
		}
		if !seen[c.Key()] {
			seen[c.Key()] = true
			out = append(out, c)
		}
	}
	return out
}

// Run measures every cell not already completed in OutDir (with Resume).
func Run(ctx context.Context, cfg Config) (*results.File, error) {
	cells := Plan(cfg.Profile, cfg.Observer)
	if err := CheckBinary(cfg.LoadgenBin); err != nil {
		return nil, err
	}
	if !cfg.Observer.external() && needsObserver(cells) {
		if err := CheckBinary(cfg.Observer.Bin); err != nil {
			return nil, err
		}
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	file, err := open(cfg)
	if err != nil {
		return nil, err
	}
	var todo []matrix.Cell
	for _, c := range cells {
		if done := file.Find(c.Key()); done == nil || !done.OK() {
			todo = append(todo, c)
		}
	}
	if skipped := len(cells) - len(todo); skipped > 0 {
		fmt.Fprintf(cfg.Log, "resume: %d of %d cells already measured in %s, %d to go\n", skipped, len(cells), cfg.OutDir, len(todo))
	}
	if err := results.Save(cfg.OutDir, file); err != nil {
		return nil, err
	}
	m := &measurer{cfg: cfg, total: len(todo) * cfg.Profile.Run.Pairs * 2, begun: time.Now()}
	failed := 0
	for i, c := range todo {
		m.cellIndex, m.cellCount = i+1, len(todo)
		rc := m.measureCell(ctx, c)
		if !rc.OK() {
			failed++
			fmt.Fprintf(cfg.Log, "[cell %d/%d] %s FAILED: %s\n", i+1, len(todo), c.Key(), rc.Error)
		}
		for _, w := range rc.Warnings {
			fmt.Fprintf(cfg.Log, "[cell %d/%d] warning: %s\n", i+1, len(todo), w)
		}
		file.Put(rc)
		file.Meta.End = time.Now().UTC()
		if err := results.Save(cfg.OutDir, file); err != nil {
			return file, err
		}
		if cfg.AfterCell != nil {
			cfg.AfterCell(file)
		}
		if ctx.Err() != nil {
			return file, fmt.Errorf("interrupted after %d of %d cells (continue with --resume): %w", i, len(todo), ctx.Err())
		}
	}
	if failed > 0 {
		return file, fmt.Errorf("%d of %d %w (see %s/results.json)", failed, len(todo), ErrCellsFailed, cfg.OutDir)
	}
	return file, nil
}

func needsObserver(cells []matrix.Cell) bool {
	for _, c := range cells {
		if c.Observed() {
			return true
		}
	}
	return false
}

func open(cfg Config) (*results.File, error) {
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
	if needsObserver(Plan(cfg.Profile, cfg.Observer)) {
		if c, err := probe.MeasureStatsCost(); err != nil {
			cost = &results.StatsCost{Note: "not measured: " + err.Error()}
		} else {
			cost = &results.StatsCost{OffNsPerRun: c.OffNsPerRun, OnNsPerRun: c.OnNsPerRun, AddedNsPerRun: c.AddedNsPerRun, Note: c.Note}
		}
	}
	return &results.File{Meta: results.Meta{BPFStatsCost: cost,
		Kernel: Kernel(), Profile: cfg.Profile.Name, Commit: Commit(), CPUs: numCPU(), CPUModel: cpuModel(),
		Start: time.Now().UTC(), GoVersion: goVersion(), Command: cfg.Command, Hostname: host,
		LoadAvgAtStart: loadAvg(), ForeignBPFProg: len(ids), Observer: cfg.Observer.String(),
		Loadgen: cfg.LoadgenBin, Run: cfg.Profile.Run,
	}, Cells: []results.Cell{}}, nil
}
