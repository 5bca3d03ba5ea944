// Package runner measures a profile's cells. It goes round by round: each
// round runs one baseline/observed pair of every cell, in ABBA order within
// a cell across rounds, with the same settle gap and warm-up before every
// run, the observer started fresh for every observed run and stopped with
// SIGTERM after. Interleaving the cells spreads a slow drift of the machine
// (which over a quick run has moved the baseline by 20%) evenly over them,
// so cells compare with each other, not only with their own baseline.
// results.json is rewritten after each pair, so an interrupted run keeps
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
	// AfterCell is called after each round of pairs is saved (e.g. to
	// refresh the report).
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
	pairs := cfg.Profile.Run.Pairs
	var todo []*cellRun
	for _, c := range cells {
		done := file.Find(c.Key())
		switch {
		case done != nil && done.OK():
			continue
		case done != nil && done.Status == statusPartial && len(done.Baseline) == len(done.Observed) && len(done.Observed) < pairs:
			todo = append(todo, &cellRun{cell: c, rc: *done}) // continue its pairs
		default:
			todo = append(todo, &cellRun{cell: c, rc: newCell(c)})
		}
	}
	if skipped := len(cells) - len(todo); skipped > 0 {
		fmt.Fprintf(cfg.Log, "resume: %d of %d cells already measured in %s, %d to go\n", skipped, len(cells), cfg.OutDir, len(todo))
	}
	if err := results.Save(cfg.OutDir, file); err != nil {
		return nil, err
	}
	m := &measurer{cfg: cfg, begun: time.Now()}
	for _, cr := range todo {
		m.total += 2 * (pairs - len(cr.rc.Observed))
	}
	failed := 0
	for pair := 0; pair < pairs; pair++ {
		// Each round starts one cell further on: in a fixed order a cell
		// would follow the same neighbour every round, and what ran just
		// before a run can bias it (two builds compared as two cells read
		// lower in whichever place came last, either way round).
		for k := range todo {
			i := (k + pair) % len(todo)
			cr := todo[i]
			if cr.finished || len(cr.rc.Observed) > pair {
				continue
			}
			m.cellIndex, m.cellCount = i+1, len(todo)
			err := m.measurePair(ctx, cr, pair)
			switch {
			case err != nil:
				cr.finished, cr.rc.Status, cr.rc.Error = true, "failed", err.Error()
				failed++
				m.done += 2 * (pairs - pair - 1)
				fmt.Fprintf(cfg.Log, "[cell %d/%d] %s FAILED: %s\n", i+1, len(todo), cr.cell.Key(), err)
			case pair == pairs-1:
				cr.finished, cr.rc.Status = true, "ok"
			default:
				cr.rc.Status = statusPartial
			}
			cr.rc.End = time.Now().UTC()
			cr.rc.Summarize()
			file.Put(cr.rc)
			file.Meta.End = cr.rc.End
			if err := results.Save(cfg.OutDir, file); err != nil {
				return file, err
			}
			if ctx.Err() != nil {
				return file, fmt.Errorf("interrupted in round %d of %d (continue with --resume): %w", pair+1, pairs, ctx.Err())
			}
		}
		if cfg.AfterCell != nil {
			cfg.AfterCell(file)
		}
	}
	for i, cr := range todo {
		for _, w := range cr.rc.Warnings {
			fmt.Fprintf(cfg.Log, "[cell %d/%d] warning: %s\n", i+1, len(todo), w)
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
