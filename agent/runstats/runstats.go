// Package runstats reads the kernel's BPF run-time statistics for the
// observer's programs: kept on for exact totals, sampled in short windows and
// scaled up, or off.
//
// While the statistics are on (BPF_ENABLE_STATS, a system-wide switch), the
// kernel reads the clock twice around every run of every BPF program. On
// connection churn that is ≈ 3 points of throughput (make bench: the
// bpf_stats=on and bpf_stats=off cells), more than the rest of the programs'
// fixed cost. Sampled mode pays it during one window per period only. Off,
// the default, never switches them: the observer changes nothing on the
// machine, and reports what the kernel counts when someone else keeps the
// statistics on (sysctl kernel.bpf_stats_enabled=1).
package runstats

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ebpf-net-obs/ebpf-net-obs/internal/bpfstats"
)

// Mode says when the statistics are on.
type Mode string

const (
	On      Mode = "on"      // all the time: exact kernel totals
	Sampled Mode = "sampled" // one window per period, totals scaled up
	Off     Mode = "off"     // never switched on by the observer (the default)
)

// Modes are the accepted values, in the order the help text lists them.
var Modes = []Mode{Off, On, Sampled}

// Totals are one program's cumulative run time and runs (exact with On,
// estimated with Sampled) and its recursion misses (always exact: the kernel
// counts those whether or not the statistics are on).
type Totals struct {
	RunSeconds float64
	Runs       float64
	Misses     uint64
}

// Options choose the mode and, for Sampled, the window and its period.
type Options struct {
	Mode   Mode
	Window time.Duration // statistics on for this long ...
	Period time.Duration // ... once in every period, at a random offset
}

// Reader owns the statistics switch for a set of programs.
type Reader struct {
	progs  map[string]*ebpf.Program
	opts   Options
	enable func() (io.Closer, error)
	sysctl func() string // kernel.bpf_stats_enabled: "1" when someone else holds the statistics on
	start  time.Time

	mu       sync.Mutex
	held     io.Closer // On: held from New to Close
	est      map[string]Totals
	measured time.Duration // how long the statistics were on for these totals
	windows  int           // sampled windows credited
	// Off: when Read last looked at the sysctl, and whether it was on.
	checked  time.Time
	sysctlOn bool
}

// New checks that the kernel can switch the statistics on and, with On,
// switches them on. On an error (which names the cause) the Reader it
// returns works as with Off.
func New(progs map[string]*ebpf.Program, o Options) (*Reader, error) {
	return newReader(progs, o, bpfstats.Enable, bpfstats.Sysctl)
}

func newReader(progs map[string]*ebpf.Program, o Options, enable func() (io.Closer, error), sysctl func() string) (*Reader, error) {
	r := &Reader{progs: progs, opts: o, enable: enable, sysctl: sysctl, start: time.Now(), est: map[string]Totals{}}
	r.checked, r.sysctlOn = r.start, sysctl() == "1"
	if o.Mode == Sampled && (o.Window <= 0 || o.Window >= o.Period) {
		r.opts.Mode = Off
		return r, fmt.Errorf("sampled BPF statistics need 0 < window (%s) < period (%s)", o.Window, o.Period)
	}
	if o.Mode == Off {
		return r, nil
	}
	c, err := enable()
	if err != nil {
		r.opts.Mode = Off
		return r, fmt.Errorf("BPF_ENABLE_STATS: %w (needs Linux 5.8 and CAP_SYS_ADMIN)", err)
	}
	if o.Mode == On {
		r.held = c
		return r, nil
	}
	return r, c.Close()
}

// Run samples until ctx ends (Sampled; the other modes return at once).
// Each period has one window at a uniformly random offset, so a load that
// repeats with the period is not always seen in the same phase.
func (r *Reader) Run(ctx context.Context) error {
	if r.opts.Mode != Sampled {
		return nil
	}
	cycle := time.Now()
	for {
		offset := rand.N(r.opts.Period - r.opts.Window + 1)
		if !sleepUntil(ctx, cycle.Add(offset)) {
			return nil
		}
		if err := r.window(ctx); err != nil {
			return err
		}
		cycle = cycle.Add(r.opts.Period)
		if !sleepUntil(ctx, cycle) {
			return nil
		}
	}
}

// window switches the statistics on for one window and credits what the
// programs ran meanwhile, scaled by period/window. The counters are read
// before the switch goes on and after it goes off, so only runs inside the
// window are counted even if another holder keeps the statistics on.
func (r *Reader) window(ctx context.Context) error {
	before, err := r.snapshot()
	if err != nil {
		return err
	}
	c, err := r.enable()
	if err != nil {
		return fmt.Errorf("BPF_ENABLE_STATS: %w", err)
	}
	on := time.Now()
	completed := sleepUntil(ctx, on.Add(r.opts.Window))
	closeErr := c.Close()
	w := time.Since(on)
	if closeErr != nil {
		return fmt.Errorf("switch BPF statistics off: %w", closeErr)
	}
	if !completed {
		return nil // stopping: a cut-short window is not credited
	}
	after, err := r.snapshot()
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	credit(r.est, before, after, w, r.opts.Period)
	r.measured += w
	r.windows++
	return nil
}

// credit adds what ran between two snapshots taken around a window of
// length w, scaled up to the period the window stands for.
func credit(est map[string]Totals, before, after map[string]*ebpf.ProgramStats, w, period time.Duration) {
	scale := float64(period) / float64(w)
	for name, a := range after {
		b, ok := before[name]
		if !ok || a.Runtime < b.Runtime || a.RunCount < b.RunCount {
			continue
		}
		t := est[name]
		t.RunSeconds += (a.Runtime - b.Runtime).Seconds() * scale
		t.Runs += float64(a.RunCount-b.RunCount) * scale
		est[name] = t
	}
}

func (r *Reader) snapshot() (map[string]*ebpf.ProgramStats, error) {
	out := make(map[string]*ebpf.ProgramStats, len(r.progs))
	for name, p := range r.progs {
		st, err := p.Stats()
		if err != nil {
			return nil, fmt.Errorf("read statistics of BPF program %s: %w", name, err)
		}
		out[name] = st
	}
	return out, nil
}

// Read returns each program's totals and how long the statistics were on
// for them (On: since New; Sampled: the sum of the completed windows; Off:
// the totals are whatever the kernel counted for other holders, and the
// time is how long sysctl kernel.bpf_stats_enabled read 1, from one Read to
// the next; another holder of BPF_ENABLE_STATS is not visible there).
func (r *Reader) Read() (map[string]Totals, time.Duration, error) {
	now, err := r.snapshot()
	if err != nil {
		return nil, 0, err
	}
	out := make(map[string]Totals, len(now))
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, st := range now {
		t := Totals{RunSeconds: st.Runtime.Seconds(), Runs: float64(st.RunCount)}
		if r.opts.Mode == Sampled {
			t = r.est[name]
		}
		t.Misses = st.RecursionMisses
		out[name] = t
	}
	if r.opts.Mode == Off {
		t, on := time.Now(), r.sysctl() == "1"
		if on && r.sysctlOn {
			r.measured += t.Sub(r.checked)
		}
		r.checked, r.sysctlOn = t, on
	}
	measured := r.measured
	if r.held != nil {
		measured = time.Since(r.start)
	}
	return out, measured, nil
}

// Counting says whether the kernel counts the programs' run times for
// Read: On and Sampled switch the statistics themselves; Off relies on
// sysctl kernel.bpf_stats_enabled=1 as Read (or New) last saw it.
func (r *Reader) Counting() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.opts.Mode != Off || r.sysctlOn
}

// Close switches the statistics off if this reader holds them on.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held == nil {
		return nil
	}
	err := r.held.Close()
	r.held = nil
	return err
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// ParseMode accepts the mode names and, for the old boolean flag, true (on)
// and false (off).
func ParseMode(s string) (Mode, error) {
	switch s {
	case "true", "1":
		return On, nil
	case "false", "0":
		return Off, nil
	}
	for _, m := range Modes {
		if Mode(s) == m {
			return m, nil
		}
	}
	return "", errors.New("want off, on or sampled")
}

// Set and String make a Mode a flag value.
func (m *Mode) Set(s string) error {
	v, err := ParseMode(s)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

func (m *Mode) String() string {
	if m == nil {
		return ""
	}
	return string(*m)
}

// UnmarshalText reads a YAML or JSON value the way Set reads a flag.
func (m *Mode) UnmarshalText(b []byte) error { return m.Set(string(b)) }
