package runner

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/measure/probe"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/bpfstats"
)

// Observer says what to measure: our binary, or any command line.
type Observer struct {
	Bin string // bin/ebpf-net-obs, run with the cell's flags
	// Cmd, when set, is run with `sh -c` instead; {transport}, {map_type},
	// {sample_rate}, {bpf_stats} and {listen} are replaced by the cell's values.
	// It counts as ready once its BPF programs are loaded and stop changing.
	Cmd string
}

func (o Observer) external() bool { return o.Cmd != "" }

// scrapes reports whether the observer serves Prometheus metrics bench can read.
func (o Observer) scrapes() bool { return !o.external() || strings.Contains(o.Cmd, "{listen}") }

func (o Observer) String() string {
	if o.external() {
		return "sh -c " + strconv.Quote(o.Cmd)
	}
	return o.Bin
}

type runningObserver struct {
	proc       *process
	baseURL    string
	progIDs    map[uint32]bool
	stats      io.Closer
	warnings   []string
	scrapes    bool
	identified string // how its programs were told apart from others'
	// timesPrograms: the statistics are on throughout the cell's runs, so
	// the programs' run time per window is measured
	timesPrograms bool
}

func startObserver(ctx context.Context, o Observer, c matrix.Cell, timeout time.Duration) (*runningObserver, error) {
	r := &runningObserver{scrapes: o.scrapes()}
	before, err := probe.ProgramIDs()
	if err != nil {
		r.warnings = append(r.warnings, fmt.Sprintf("list BPF programs: %v (run as root for BPF run times)", err))
	}
	r.timesPrograms = c.BPFStats.TimesPrograms() || (o.external() && c.BPFStats != matrix.StatsOff)
	if r.timesPrograms {
		// enabled by bench too, so an observer that does not enable the
		// statistics itself is still measured; the kernel counts references.
		// Not in sampled cells of our observer: there they are on only in
		// its own windows, and holding them would add their full cost.
		if r.stats, err = bpfstats.Enable(); err != nil {
			r.warnings = append(r.warnings, fmt.Sprintf("enable BPF stats: %v (no BPF run times)", err))
		}
	}
	addr, err := freeAddr()
	if err != nil {
		r.closeStats()
		return nil, err
	}
	r.baseURL = "http://" + addr
	if o.external() {
		line := strings.NewReplacer("{transport}", c.Transport, "{map_type}", c.MapType,
			"{sample_rate}", c.SampleRate.String(), "{bpf_stats}", string(c.BPFStats),
			"{listen}", addr).Replace(o.Cmd)
		r.proc, err = startCmd(exec.CommandContext(ctx, "sh", "-c", line))
	} else {
		r.proc, err = start(ctx, o.Bin, []string{"--listen-address", addr, "--transport", c.Transport,
			"--map-type", c.MapType, "--sample-rate", c.SampleRate.String(),
			"--bpf-stats=" + string(c.BPFStats)})
	}
	if err != nil {
		r.closeStats()
		return nil, fmt.Errorf("start observer %s: %w", o, err)
	}
	if err := r.waitReady(ctx, o, before, timeout); err != nil {
		_ = r.proc.stop(5 * time.Second)
		r.closeStats()
		return nil, err
	}
	return r, nil
}

// waitReady waits for /healthz 200 (our observer) or for the command's BPF
// programs to appear and settle (any observer), then pins down which
// programs are the observer's.
func (r *runningObserver) waitReady(ctx context.Context, o Observer, before map[uint32]bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := -1
	for {
		if r.proc.exited() {
			return fmt.Errorf("observer exited before it was ready: %v: %s", r.proc.exitErr(), lastLine(r.proc.tail()))
		}
		if o.external() {
			n := len(r.ownPrograms(before))
			if n > 0 && n == last {
				break
			}
			last = n
		} else if probe.Healthy(ctx, r.baseURL+"/healthz") {
			break
		}
		if time.Now().After(deadline) {
			what := "GET /healthz did not answer 200"
			if o.external() {
				what = "no BPF programs of its own appeared"
			}
			return fmt.Errorf("observer not ready after %s: %s: %s", timeout, what, lastLine(r.proc.tail()))
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	r.progIDs = r.ownPrograms(before)
	if len(r.progIDs) == 0 {
		r.warnings = append(r.warnings, "no BPF programs found for the observer: BPF run time not measured")
	}
	return nil
}

// ownPrograms are the programs the observer's processes hold fds to; if it
// holds none (pinned and closed), those loaded since it started.
func (r *runningObserver) ownPrograms(before map[uint32]bool) map[uint32]bool {
	held := probe.HeldObjects(probe.Tree(r.proc.pid())).ProgIDs
	if len(held) > 0 {
		r.identified = "held fds"
		return held
	}
	now, _ := probe.ProgramIDs()
	fresh := map[uint32]bool{}
	for id := range now {
		if !before[id] {
			fresh[id] = true
		}
	}
	r.identified = "appeared after start (may include other people's programs)"
	return fresh
}

type snapshot struct {
	cpuNs   int64
	progs   map[uint32]probe.ProgStat
	metrics *probe.Metrics
}

// snapshot reads the observer's CPU time and BPF statistics: cheap, so it
// can mark the edges of the measured window.
func (r *runningObserver) snapshot() snapshot {
	s := snapshot{cpuNs: r.cpuNs()}
	if r.timesPrograms {
		s.progs = probe.ProgramStats(r.progIDs)
	}
	return s
}

// restWindow is a stretch with no load: when it began and the observer's
// CPU time then.
type restWindow struct {
	at    time.Time
	cpuNs int64
}

func (r *runningObserver) beginRest() restWindow { return restWindow{time.Now(), r.cpuNs()} }

// endRest returns the observer's CPU time since w began, and the wall time.
func (r *runningObserver) endRest(w restWindow) (cpuNs, wallNs int64) {
	return r.cpuNs() - w.cpuNs, int64(time.Since(w.at))
}

func (r *runningObserver) cpuNs() int64 { return probe.CPUNs(probe.Tree(r.proc.pid())) }

// scrape reads the observer's /metrics (lost and sampled-out counters). A
// scrape costs the observer real CPU (every per-connection series is
// built), so it is taken outside the measured window: before the warm-up
// and after the client ended.
func (r *runningObserver) scrape(ctx context.Context) *probe.Metrics {
	if !r.scrapes {
		return nil
	}
	m, err := probe.Scrape(ctx, r.baseURL+"/metrics")
	if err != nil {
		return nil
	}
	return m
}

// window turns two snapshots into what the observer cost in between.
func (r *runningObserver) window(a, b snapshot) *results.Probe {
	pids := probe.Tree(r.proc.pid())
	p := &results.Probe{
		AgentCPUNs:        b.cpuNs - a.cpuNs,
		AgentPeakRSSBytes: probe.PeakRSS(pids),
		MapMemlockBytes:   probe.HeldObjects(pids).MapMemlock(),
	}
	for id, end := range b.progs {
		begin := a.progs[id]
		p.Programs = append(p.Programs, results.Program{ID: id, Name: end.Name,
			RunTimeNs: end.RunTimeNs - begin.RunTimeNs, RunCount: end.RunCount - begin.RunCount})
	}
	if a.metrics != nil && b.metrics != nil {
		p.Scraped = true
		p.EventsLost = b.metrics.Sum("ebpf_net_obs_events_lost_total") - a.metrics.Sum("ebpf_net_obs_events_lost_total")
		p.EventsSampledOut = b.metrics.Sum("ebpf_net_obs_events_sampled_out_total") - a.metrics.Sum("ebpf_net_obs_events_sampled_out_total")
		p.MapEntries = b.metrics.ByLabel("ebpf_net_obs_map_entries", "map")
		p.MapCapacity = b.metrics.ByLabel("ebpf_net_obs_map_capacity", "map")
	}
	return p
}

// stop sends SIGTERM and checks the exit and that nothing stays loaded.
func (r *runningObserver) stop(external bool) []string {
	warnings := r.warnings
	if err := r.proc.stop(15 * time.Second); err != nil {
		// a shell wrapping the observer dies of the signal itself; only our
		// own observer is required to handle SIGTERM and exit 0
		if !external || !r.proc.killedBy(syscall.SIGTERM) {
			warnings = append(warnings, "observer did not stop cleanly: "+err.Error())
		}
	}
	r.closeStats()
	// the kernel frees programs after their last reference, asynchronously
	deadline := time.Now().Add(2 * time.Second)
	for len(probe.Alive(r.progIDs)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if left := probe.Alive(r.progIDs); len(left) > 0 {
		warnings = append(warnings, fmt.Sprintf("observer left %d BPF programs loaded after exit (ids %v)", len(left), left))
	}
	return warnings
}

func (r *runningObserver) closeStats() {
	if r.stats != nil {
		r.stats.Close()
		r.stats = nil
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
