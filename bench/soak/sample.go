package soak

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/measure/probe"
)

// sampler looks at the observer every interval until stopped.
type sampler struct {
	mu      sync.Mutex
	samples []Sample
	cancel  context.CancelFunc
	done    chan struct{}
}

func startSampler(r *rig, every time.Duration) *sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sampler{cancel: cancel, done: make(chan struct{})}
	begun := time.Now()
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			// a failed look (the observer busy past the scrape timeout) is a gap, not an end
			if smp, err := look(r); err == nil {
				smp.T = time.Since(begun).Seconds()
				s.mu.Lock()
				s.samples = append(s.samples, smp)
				s.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *sampler) stop() []Sample {
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// latest is the last sample as a progress line's tail.
func (s *sampler) latest() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return "no sample yet"
	}
	l := s.samples[len(s.samples)-1]
	return fmt.Sprintf("rss %.0f MiB, map entries %.0f, series %.0f, goroutines %.0f, fds %.0f, events lost %.0f",
		l.RSSBytes/(1<<20), l.MapEntries, l.Series, l.Goroutines, l.FDs, l.EventsLost)
}

// look reads the observer from /proc and from its /metrics.
func look(r *rig) (Sample, error) {
	pid := r.obs.Pid()
	var s Sample
	var err error
	if s.RSSBytes, err = vmRSS(pid); err != nil {
		return s, err
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.FDs = float64(len(fds))
	body, err := fetch(r.metrics)
	if err != nil {
		return s, err
	}
	m, err := probe.ParseMetrics(bytes.NewReader(body))
	if err != nil {
		return s, err
	}
	s.Goroutines = m.Sum("go_goroutines")
	s.MapEntries = m.ByLabel("ebpf_net_obs_map_entries", "map")["conns"]
	s.Series = float64(bytes.Count(body, []byte("\nebpf_net_obs_connection_bytes_sent_total{")))
	s.ProcessRSS = m.Sum("process_resident_memory_bytes")
	s.EventsLost = m.Sum("ebpf_net_obs_events_lost_total")
	s.FlushCPU = m.Sum("ebpf_net_obs_flush_cpu_seconds_total") // absent: 0
	s.Flushes = m.Sum("ebpf_net_obs_flush_duration_seconds_count")
	return s, nil
}

// vmRSS is /proc/PID/status's VmRSS in bytes (probe.PeakRSS reads the peak, VmHWM).
func vmRSS(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}
