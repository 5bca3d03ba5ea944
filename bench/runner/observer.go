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
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/measure/child"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/measure/probe"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/synth"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/bpfstats"
)

// Observer says what to measure: our binary, or any command line.
type Observer struct {
	Name string // how cells name it when a run measures several
	Bin  string // bin/ebpf-net-obs, run with the cell's flags
	// InjectNs adds bench's calibrated busy loop to every connect() in all
	// of this observer's arms: a build made costlier by a known amount, to
	// show what a gate comparing it with another catches.
	InjectNs float64
	// Cmd, when set, is run with `sh -c` instead; {transport}, {map_type},
	// {sample_rate}, {bpf_stats} and {listen} are replaced by the cell's values.
	// It counts as ready once its BPF programs are loaded and stop changing.
	Cmd string
}

// External reports whether the observer is a command line, not our binary.
func (o Observer) External() bool { return o.Cmd != "" }

// scrapes reports whether the observer serves Prometheus metrics bench can read.
func (o Observer) scrapes() bool { return !o.External() || strings.Contains(o.Cmd, "{listen}") }

func (o Observer) String() string {
	s := o.Bin
	if o.External() {
		s = "sh -c " + strconv.Quote(o.Cmd)
	}
	if o.Name != "" {
		s = o.Name + "=" + s
	}
	if o.InjectNs > 0 {
		s += fmt.Sprintf(" (+%.0f ns of injected busy work per connect)", o.InjectNs)
	}
	return s
}

// ParseObserver reads NAME=BIN, the value of bench run --observer.
func ParseObserver(v string) (Observer, error) {
	name, bin, ok := strings.Cut(v, "=")
	if !ok || name == "" || bin == "" || strings.ContainsAny(name, "/ ") {
		return Observer{}, fmt.Errorf("--observer %q: want NAME=BIN, e.g. new=bin/ebpf-net-obs (a name without / or spaces)", v)
	}
	return Observer{Name: name, Bin: bin}, nil
}

type runningObserver struct {
	proc       *child.Process  // nil for bench's own floor programs
	synth      *synth.Programs // bench's own programs: the floor, or an injected cost
	external   bool
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

// startObserver starts what cell c's arm runs: bench's floor programs, or
// the observer, with the injected cost on top in an inject arm (its loop
// sized from nsPerIteration, calibrated once per run).
func startObserver(ctx context.Context, o Observer, c matrix.Cell, run matrix.RunSettings, nsPerIteration float64) (r *runningObserver, err error) {
	if c.Arm == matrix.ArmFloor {
		r = &runningObserver{progIDs: map[uint32]bool{}}
		if r.synth, err = synth.Floor(""); err != nil {
			return nil, fmt.Errorf("floor programs: %w", err)
		}
		for _, id := range r.synth.IDs() {
			r.progIDs[id] = true
		}
		return r, nil
	}
	r, err = startProcess(ctx, o, c, run.HealthTimeout.D())
	inject := o.InjectNs
	if c.Arm == matrix.ArmInject {
		inject += run.InjectNsPerOp
	}
	if err != nil || inject == 0 {
		return r, err
	}
	if r.synth, err = synth.InjectCalibrated(inject, nsPerIteration); err != nil {
		r.stop()
		return nil, fmt.Errorf("injected cost: %w", err)
	}
	for _, id := range r.synth.IDs() {
		r.progIDs[id] = true
	}
	return r, nil
}

func startProcess(ctx context.Context, o Observer, c matrix.Cell, timeout time.Duration) (*runningObserver, error) {
	r := &runningObserver{scrapes: o.scrapes(), external: o.External()}
	before, err := probe.ProgramIDs()
	if err != nil {
		r.warnings = append(r.warnings, fmt.Sprintf("list BPF programs: %v (run as root for BPF run times)", err))
	}
	r.timesPrograms = c.BPFStats.TimesPrograms() || (o.External() && c.BPFStats != matrix.StatsOff)
	if r.timesPrograms {
		// enabled by bench too, so an observer that does not enable the
		// statistics itself is still measured; the kernel counts references.
		// Not in sampled cells of our observer: there they are on only in
		// its own windows, and holding them would add their full cost.
		if r.stats, err = bpfstats.Enable(); err != nil {
			r.warnings = append(r.warnings, fmt.Sprintf("enable BPF stats: %v (no BPF run times)", err))
		}
	}
	addr, err := child.FreeAddr()
	if err != nil {
		r.closeStats()
		return nil, err
	}
	r.baseURL = "http://" + addr
	if o.External() {
		line := strings.NewReplacer("{transport}", c.Transport, "{map_type}", c.MapType,
			"{sample_rate}", c.SampleRate.String(), "{bpf_stats}", string(c.BPFStats),
			"{listen}", addr).Replace(o.Cmd)
		r.proc, err = child.StartCmd(exec.CommandContext(ctx, "sh", "-c", line))
	} else {
		args := []string{"--listen-address", addr, "--transport", c.Transport,
			"--map-type", c.MapType, "--sample-rate", c.SampleRate.String(),
			"--bpf-stats=" + string(c.BPFStats)}
		if c.FlushInterval > 0 {
			args = append(args, "--flush-interval", c.FlushInterval.D().String())
		}
		if c.MaxConnections > 0 {
			args = append(args, "--max-connections", strconv.Itoa(c.MaxConnections))
		}
		r.proc, err = child.Start(ctx, o.Bin, args...)
	}
	if err != nil {
		r.closeStats()
		return nil, fmt.Errorf("start observer %s: %w", o, err)
	}
	if err := r.waitReady(ctx, o, before, timeout); err != nil {
		_ = r.proc.Stop(5 * time.Second)
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
		if r.proc.Exited() {
			return fmt.Errorf("observer exited before it was ready: %v: %s", r.proc.ExitErr(), child.LastLine(r.proc.Tail()))
		}
		if o.External() {
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
			if o.External() {
				what = "no BPF programs of its own appeared"
			}
			return fmt.Errorf("observer not ready after %s: %s: %s", timeout, what, child.LastLine(r.proc.Tail()))
		}
		if err := child.Sleep(ctx, 100*time.Millisecond); err != nil {
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
	held := probe.HeldObjects(probe.Tree(r.proc.Pid())).ProgIDs
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

func (r *runningObserver) cpuNs() int64 {
	if r.proc == nil {
		return 0
	}
	return probe.CPUNs(probe.Tree(r.proc.Pid()))
}

// exited reports whether the observer's process has ended.
func (r *runningObserver) exited() bool { return r.proc != nil && r.proc.Exited() }

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
	p := &results.Probe{AgentCPUNs: b.cpuNs - a.cpuNs, Programs: diffPrograms(a.progs, b.progs)}
	if r.proc != nil {
		pids := probe.Tree(r.proc.Pid())
		p.AgentPeakRSSBytes, p.MapMemlockBytes = probe.PeakRSS(pids), probe.HeldObjects(pids).MapMemlock()
	}
	if a.metrics != nil && b.metrics != nil {
		p.Scraped = true
		p.EventsLost = b.metrics.Sum("ebpf_net_obs_events_lost_total") - a.metrics.Sum("ebpf_net_obs_events_lost_total")
		p.EventsSampledOut = b.metrics.Sum("ebpf_net_obs_events_sampled_out_total") - a.metrics.Sum("ebpf_net_obs_events_sampled_out_total")
		p.MapEntries = b.metrics.ByLabel("ebpf_net_obs_map_entries", "map")
		p.MapCapacity = b.metrics.ByLabel("ebpf_net_obs_map_capacity", "map")
		const flush = "ebpf_net_obs_flush_duration_seconds"
		p.Flushes = b.metrics.Sum(flush+"_count") - a.metrics.Sum(flush+"_count")
		p.FlushWallNs = 1e9 * (b.metrics.Sum(flush+"_sum") - a.metrics.Sum(flush+"_sum"))
		p.FlushCPUNs = 1e9 * (b.metrics.Sum("ebpf_net_obs_flush_cpu_seconds_total") - a.metrics.Sum("ebpf_net_obs_flush_cpu_seconds_total"))
		if p.Flushes > 0 {
			before := a.metrics.ByLabel(flush+"_bucket", "le")
			p.FlushBuckets = b.metrics.ByLabel(flush+"_bucket", "le")
			for le := range p.FlushBuckets {
				p.FlushBuckets[le] -= before[le]
			}
		}
	}
	return p
}

// stop sends SIGTERM and checks the exit and that nothing stays loaded.
func (r *runningObserver) stop() []string {
	warnings := r.warnings
	if r.synth != nil {
		if err := r.synth.Close(); err != nil {
			warnings = append(warnings, "bench's own programs: "+err.Error())
		}
	}
	if r.proc != nil {
		if err := r.proc.Stop(15 * time.Second); err != nil {
			// a shell wrapping the observer dies of the signal itself; only our
			// own observer is required to handle SIGTERM and exit 0
			if !r.external || !r.proc.KilledBy(syscall.SIGTERM) {
				warnings = append(warnings, "observer did not stop cleanly: "+err.Error())
			}
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
