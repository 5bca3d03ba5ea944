package observer

import (
	"sync"
	"testing"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/config"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/runstats"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/bpfstats"
)

// TestBPFStatsSwitch: under connection churn, the kernel counts set_state's
// runs only while the statistics are on, so the share of 10 ms intervals in
// which its run count moved is the share of time they were on: about
// window/period when sampled, all of it when on. The scaled counters reach
// /metrics either way.
func TestBPFStatsSwitch(t *testing.T) {
	if bpfstats.Sysctl() == "1" {
		t.Skip("kernel.bpf_stats_enabled=1: the statistics are on regardless of the observer")
	}
	for _, tc := range []struct {
		mode     runstats.Mode
		min, max float64
	}{
		{runstats.Sampled, 0.08, 0.40}, // window 100 ms in 500 ms: 0.2
		{runstats.On, 0.95, 1},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			ob := start(t, func(c *config.Config) {
				c.BPFStats, c.BPFStatsWindow, c.BPFStatsPeriod = tc.mode, 100*time.Millisecond, 500*time.Millisecond
			})
			setState := ob.kern.Programs()["set_state"]
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); churn(t, 1, 2) }() // 2 s of crr
			time.Sleep(100 * time.Millisecond)              // past loadgen's start
			var moved, intervals int
			last, err := setState.Stats()
			if err != nil {
				t.Fatal(err)
			}
			for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); intervals++ {
				time.Sleep(10 * time.Millisecond)
				st, err := setState.Stats()
				if err != nil {
					t.Fatal(err)
				}
				if st.RunCount != last.RunCount {
					moved++
				}
				last = st
			}
			wg.Wait()
			share := float64(moved) / float64(intervals)
			t.Logf("%s: set_state's run count moved in %d of %d 10 ms intervals (%.2f)", tc.mode, moved, intervals, share)
			if share < tc.min || share > tc.max {
				t.Errorf("%s: statistics on in %.2f of the time, want %.2f to %.2f", tc.mode, share, tc.min, tc.max)
			}
			runs := ob.value(t, "ebpf_net_obs_bpf_program_runs_total", map[string]string{"program": "set_state"})
			secs := ob.value(t, "ebpf_net_obs_bpf_program_run_seconds_total", map[string]string{"program": "set_state"})
			on := ob.value(t, "ebpf_net_obs_bpf_stats_enabled_seconds_total", nil)
			t.Logf("%s: runs_total %.0f, run_seconds_total %.4f, enabled %.2f s", tc.mode, runs, secs, on)
			if runs < 1000 || secs <= 0 || on <= 0 {
				t.Errorf("%s: /metrics has runs %.0f, run seconds %g, statistics on %g s after 2 s of churn", tc.mode, runs, secs, on)
			}
		})
	}
}

// TestDefaultReadsStatisticsOthersHold: by default (--bpf-stats=off) the
// observer switches nothing on the machine, yet while someone else holds
// the kernel's statistics on (here the test, as BPF_ENABLE_STATS; the sysctl
// kernel.bpf_stats_enabled=1 alike) it reports its programs' run times.
func TestDefaultReadsStatisticsOthersHold(t *testing.T) {
	ob := start(t, nil)
	if ob.cfg.BPFStats != runstats.Off {
		t.Fatalf("default --bpf-stats %q, want off", ob.cfg.BPFStats)
	}
	hold, err := bpfstats.Enable()
	if err != nil {
		t.Skipf("cannot hold the statistics on here: %v", err)
	}
	defer hold.Close()
	churn(t, 1, 2) // 2 s of crr
	runs := ob.value(t, "ebpf_net_obs_bpf_program_runs_total", map[string]string{"program": "set_state"})
	secs := ob.value(t, "ebpf_net_obs_bpf_program_run_seconds_total", map[string]string{"program": "set_state"})
	t.Logf("set_state: %.0f runs, %.4f s while the test held the statistics on", runs, secs)
	if runs < 1000 || secs <= 0 {
		t.Errorf("/metrics has set_state runs %.0f, run seconds %g after 2 s of churn with the statistics held on", runs, secs)
	}
}
