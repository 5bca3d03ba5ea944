package runstats

import (
	"context"
	"errors"
	"flag"
	"io"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/ebpf-net-obs/ebpf-net-obs/internal/bpfstats"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
)

func TestCreditScalesTheWindowToThePeriod(t *testing.T) {
	est := map[string]Totals{"a": {RunSeconds: 1, Runs: 5}}
	before := map[string]*ebpf.ProgramStats{
		"a": {Runtime: 2 * time.Millisecond, RunCount: 100},
		"b": {Runtime: 0, RunCount: 0},
	}
	after := map[string]*ebpf.ProgramStats{
		"a": {Runtime: 3 * time.Millisecond, RunCount: 150},
		"b": {Runtime: 4 * time.Millisecond, RunCount: 10},
		"c": {Runtime: time.Second, RunCount: 9}, // loaded meanwhile: no base, not credited
	}
	credit(est, before, after, 500*time.Millisecond, 5*time.Second)
	want := map[string]Totals{"a": {RunSeconds: 1 + 0.001*10, Runs: 5 + 50*10}, "b": {RunSeconds: 0.004 * 10, Runs: 100}}
	for name, w := range want {
		g := est[name]
		if math.Abs(g.RunSeconds-w.RunSeconds) > 1e-12 || g.Runs != w.Runs {
			t.Errorf("%s: got %+v, want %+v", name, g, w)
		}
	}
	if _, ok := est["c"]; ok {
		t.Errorf("program without a before snapshot credited: %+v", est["c"])
	}
}

func TestModeFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want Mode
		err  bool
	}{
		{nil, Off, false},
		{[]string{"--bpf-stats", "on"}, On, false},
		{[]string{"--bpf-stats=false"}, Off, false},
		{[]string{"--bpf-stats=true"}, On, false},
		{[]string{"--bpf-stats=sampled"}, Sampled, false},
		{[]string{"--bpf-stats=off"}, Off, false},
		{[]string{"--bpf-stats=sometimes"}, "", true},
	} {
		m := Off // config.Default's
		fs := flag.NewFlagSet("", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Var(&m, "bpf-stats", "")
		err := fs.Parse(tc.args)
		if (err != nil) != tc.err || (!tc.err && m != tc.want) {
			t.Errorf("%v: mode %q, err %v; want %q, error %v", tc.args, m, err, tc.want, tc.err)
		}
		if tc.err && err != nil && (!strings.Contains(err.Error(), "want off, on or sampled") || strings.Contains(err.Error(), "boolean")) {
			t.Errorf("%v: error %q does not name the accepted values", tc.args, err)
		}
	}
}

type fakeSwitch struct{ opened, closed int }

func (f *fakeSwitch) enable() (io.Closer, error) { f.opened++; return f, nil }
func (f *fakeSwitch) Close() error               { f.closed++; return nil }

func TestNewHoldsOnlyInModeOn(t *testing.T) {
	for _, tc := range []struct {
		mode                 Mode
		openNew, closedAfter int // switch-ons by New; switch-offs once New returned
	}{
		{On, 1, 0},
		{Sampled, 1, 1}, // probed once, then off until the first window
		{Off, 0, 0},
	} {
		var f fakeSwitch
		r, err := newReader(nil, Options{Mode: tc.mode, Window: time.Second, Period: 10 * time.Second}, f.enable, sysctlReads("0"))
		if err != nil || f.opened != tc.openNew || f.closed != tc.closedAfter {
			t.Errorf("%s: New switched on %d and off %d times (err %v); want %d and %d",
				tc.mode, f.opened, f.closed, err, tc.openNew, tc.closedAfter)
		}
		if err := r.Close(); err != nil || f.closed != f.opened {
			t.Errorf("%s: after Close %d on, %d off (err %v)", tc.mode, f.opened, f.closed, err)
		}
	}
}

func TestNewFailureFallsBackToOff(t *testing.T) {
	refuse := func() (io.Closer, error) { return nil, errors.New("operation not permitted") }
	r, err := newReader(nil, Options{Mode: Sampled, Window: time.Second, Period: 10 * time.Second}, refuse, sysctlReads("0"))
	if err == nil || !strings.Contains(err.Error(), "5.8") {
		t.Fatalf("error %v does not name the cause and the kernel it needs", err)
	}
	// Run must not try windows the kernel refuses.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.Run(ctx); err != nil || r.opts.Mode != Off {
		t.Errorf("after a refused switch: Run %v, mode %s; want nil, off", err, r.opts.Mode)
	}
	if _, err := newReader(nil, Options{Mode: Sampled, Window: time.Second, Period: time.Second}, refuse, sysctlReads("0")); err == nil {
		t.Error("window as long as the period accepted")
	}
}

func sysctlReads(v string) func() string { return func() string { return v } }

// Off changes nothing on the machine, yet when someone else set
// kernel.bpf_stats_enabled=1 it reports the kernel's run times and how long
// the sysctl said the statistics were on; with the sysctl at 0, no time.
func TestOffReadsStatisticsOthersSwitchedOn(t *testing.T) {
	for _, sysctl := range []string{"1", "0"} {
		var f fakeSwitch
		r, err := newReader(nil, Options{Mode: Off}, f.enable, sysctlReads(sysctl))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		_, on, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if f.opened != 0 {
			t.Errorf("sysctl %s: off switched the statistics on %d times", sysctl, f.opened)
		}
		if counting := r.Counting(); counting != (sysctl == "1") {
			t.Errorf("sysctl %s: Counting() = %v", sysctl, counting)
		}
		if sysctl == "1" && on < 20*time.Millisecond {
			t.Errorf("sysctl 1: statistics on for %s over 20ms, want the whole time", on)
		}
		if sysctl == "0" && on != 0 {
			t.Errorf("sysctl 0: statistics on for %s, want 0", on)
		}
	}
}

// emptyProgram is a socket filter that returns at once; BPF_PROG_TEST_RUN
// runs it as the kernel would, statistics included.
func emptyProgram(t *testing.T) *ebpf.Program {
	t.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func runN(t *testing.T, p *ebpf.Program, n int) {
	t.Helper()
	if _, err := p.Run(&ebpf.RunOptions{Data: make([]byte, 64), Repeat: uint32(n)}); err != nil {
		t.Fatal(err)
	}
}

// On counts every run, exactly; Off leaves the kernel's counters still.
func TestOnIsExactOffIsSilent(t *testing.T) {
	privtest.Require(t)
	p := emptyProgram(t)
	progs := map[string]*ebpf.Program{"empty": p}

	off, err := New(progs, Options{Mode: Off})
	if err != nil {
		t.Fatal(err)
	}
	runN(t, p, 1000)
	if got, _, _ := off.Read(); got["empty"].Runs != 0 && bpfstats.Sysctl() != "1" {
		t.Errorf("off: %v runs counted", got["empty"].Runs)
	}

	on, err := New(progs, Options{Mode: On})
	if err != nil {
		t.Fatal(err)
	}
	before, _, _ := on.Read()
	runN(t, p, 12345)
	after, held, err := on.Read()
	if err != nil {
		t.Fatal(err)
	}
	if d := after["empty"].Runs - before["empty"].Runs; d != 12345 {
		t.Errorf("on: %v runs counted, the test ran 12345", d)
	}
	if s := after["empty"].RunSeconds - before["empty"].RunSeconds; s <= 0 || s/12345 > 10e-6 {
		t.Errorf("on: %g s for 12345 runs of an empty program", s)
	}
	if held <= 0 {
		t.Errorf("on: statistics on for %s", held)
	}
	if err := on.Close(); err != nil {
		t.Fatal(err)
	}
}

// Sampled switches the statistics on for its windows only, and its scaled
// totals match the runs the test itself made, at a steady rate, to within
// the tolerance a dozen windows give.
func TestSampledEstimatesRuns(t *testing.T) {
	privtest.Require(t)
	if bpfstats.Sysctl() == "1" {
		t.Log("kernel.bpf_stats_enabled=1: the windows still count only runs inside them")
	}
	p := emptyProgram(t)
	const window, period = 40 * time.Millisecond, 200 * time.Millisecond
	r, err := New(map[string]*ebpf.Program{"empty": p}, Options{Mode: Sampled, Window: window, Period: period})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// A steady load, counted by the test: 1000 runs every millisecond. Paced,
	// not back to back: a program run in a tight loop runs slower while the
	// statistics are on, and the windows would see a lower rate than the rest.
	var ran atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := p.Run(&ebpf.RunOptions{Data: make([]byte, 64), Repeat: 1000}); err != nil {
				t.Error(err)
				return
			}
			ran.Add(1000)
		}
	}()
	start := time.Now()
	const cycles = 15
	ctx, cancel := context.WithTimeout(context.Background(), cycles*period-period/2) // stop mid-cycle, after its window at the latest
	err = r.Run(ctx)
	cancel()
	elapsed, truth := time.Since(start), ran.Load()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}

	got, on, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	windows := r.windows
	r.mu.Unlock()
	if windows < cycles-1 || windows > cycles || on < time.Duration(windows)*window {
		t.Fatalf("%d windows, statistics on for %s, in %s; want %d or %d windows of at least %s each", windows, on, elapsed, cycles-1, cycles, window)
	}
	// The estimate stands for the cycles whose windows were credited.
	estRate := got["empty"].Runs / (float64(windows) * period.Seconds())
	trueRate := float64(truth) / elapsed.Seconds()
	t.Logf("%d windows (%s on): estimated %.0f runs/s, the test ran %.0f runs/s; %.1f ns per run",
		windows, on, estRate, trueRate, 1e9*got["empty"].RunSeconds/got["empty"].Runs)
	if math.Abs(estRate/trueRate-1) > 0.25 {
		t.Errorf("estimated %.0f runs/s, true %.0f runs/s: off by more than 25%%", estRate, trueRate)
	}
	if ns := 1e9 * got["empty"].RunSeconds / got["empty"].Runs; !(ns > 0 && ns < 10000) {
		t.Errorf("%.1f ns per run of an empty program", ns)
	}
}

// TestSwitchCost: switching the statistics on and off patches every inlined
// BPF dispatch site in the kernel (a static key). The switching thread pays
// for the patching, and every other CPU is interrupted to resynchronise its
// instruction stream: a busy thread there loses time too (on this VM more
// than the switcher spends). Both must stay far below the sampling period:
// at the default 30 s, 50 ms per switch pair would be 0.17% of a CPU.
func TestSwitchCost(t *testing.T) {
	privtest.Require(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs a second CPU for the busy thread")
	}
	var stop atomic.Bool
	var loops atomic.Uint64
	go func() {
		runtime.LockOSThread() // a thread of its own, as a workload's would be
		var n uint64
		for !stop.Load() {
			if n++; n&1023 == 0 {
				loops.Store(n)
			}
		}
	}()
	defer stop.Store(true)
	rate := func(d time.Duration, work func()) (perSec float64, wall time.Duration) {
		l0, t0 := loops.Load(), time.Now()
		work()
		if d > 0 {
			time.Sleep(d)
		}
		wall = time.Since(t0)
		return float64(loops.Load()-l0) / wall.Seconds(), wall
	}
	time.Sleep(50 * time.Millisecond) // the busy thread is running

	runtime.LockOSThread() // RUSAGE_THREAD below: this thread's time only
	defer runtime.UnlockOSThread()
	var r0, r1 unix.Rusage
	const pairs = 50
	quiet, _ := rate(300*time.Millisecond, func() {})
	switching, wall := rate(0, func() {
		if err := unix.Getrusage(unix.RUSAGE_THREAD, &r0); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < pairs; i++ {
			c, err := bpfstats.Enable()
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if err := unix.Getrusage(unix.RUSAGE_THREAD, &r1); err != nil {
			t.Fatal(err)
		}
	})
	cpu := time.Duration(r1.Utime.Nano()+r1.Stime.Nano()-r0.Utime.Nano()-r0.Stime.Nano()) / pairs
	lost := time.Duration(max(0, 1-switching/quiet) * float64(wall) / pairs)
	t.Logf("one switch on and off: %v of the switching thread's CPU, %v taken from a busy thread on another CPU, %v wall (go test -run TestSwitchCost -v ./agent/runstats)",
		cpu, lost, wall/pairs)
	if cpu > 50*time.Millisecond {
		t.Errorf("switching the statistics on and off costs %v of CPU, want < 50ms", cpu)
	}
	if lost > 50*time.Millisecond {
		t.Errorf("switching the statistics on and off takes %v from a busy thread on another CPU, want < 50ms", lost)
	}
}
