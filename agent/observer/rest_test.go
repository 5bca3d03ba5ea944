package observer

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/config"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/runstats"
)

// TestRestingObserverSleeps: with nothing to observe, the observer wakes a
// few times a second (drain timer, flush, the Go runtime's monitor), not
// dozens: each wake-up is a context switch. With the former 100 ms drain
// timer this test measured 64 voluntary switches a second, with 500 ms 31
// (go test -run TestRestingObserverSleeps -v ./agent/observer).
//
// The sampled BPF statistics are off here: a window (one per 30 s by default)
// switches a kernel static key on and off: ≈ 8–20 ms in one system call
// (TestSwitchCost in agent/runstats), around which Go hands the thread's P
// to another thread; with 5 windows a second this test read ≈ 240 a second
// instead of ≈ 25, so one window falling into its 3 s or not swings the
// count by ≈ 15 a second (a 5.10 guest read 54). The timers are what this
// test bounds.
//
// The count is the whole test process's, which includes whatever earlier
// tests left winding down (a 7.2 guest read 60 a second after the full
// package), so the rate of a window before the observer starts is taken off.
func TestRestingObserverSleeps(t *testing.T) {
	const window = 3 * time.Second
	rate := func() float64 {
		before := voluntarySwitches(t)
		time.Sleep(window)
		return float64(voluntarySwitches(t)-before) / window.Seconds()
	}
	background := rate()
	start(t, func(c *config.Config) {
		c.FlushInterval = config.Default().FlushInterval
		c.BPFStats = runstats.Off
	})
	time.Sleep(time.Second) // past start-up
	perSecond := rate() - background
	t.Logf("%.0f voluntary context switches per second at rest (the process without it: %.0f)", perSecond, background)
	if perSecond > 50 {
		t.Errorf("observer at rest made %.0f voluntary context switches per second, want at most 50", perSecond)
	}
}

// voluntarySwitches sums voluntary_ctxt_switches over this process's threads.
func voluntarySwitches(t *testing.T) int {
	t.Helper()
	paths, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue // the thread exited
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "voluntary_ctxt_switches:"); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				total += n
			}
		}
		f.Close()
	}
	return total
}
