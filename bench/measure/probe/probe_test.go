package probe

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

const fixture = `# HELP ebpf_net_obs_events_lost_total Events lost.
# TYPE ebpf_net_obs_events_lost_total counter
ebpf_net_obs_events_lost_total{reason="ringbuf_full"} 3
ebpf_net_obs_events_lost_total{reason="map_full"} 4
ebpf_net_obs_events_sampled_out_total 90
ebpf_net_obs_map_entries{map="conns"} 12
ebpf_net_obs_map_capacity{map="conns"} 65536
go_gc_duration_seconds{quantile="0.5"} 1.5e-05
`

func TestParseMetrics(t *testing.T) {
	m, err := ParseMetrics(strings.NewReader(fixture))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Sum("ebpf_net_obs_events_lost_total"); got != 7 {
		t.Errorf("lost = %v, want 7 (summed over reasons)", got)
	}
	if got := m.Sum("ebpf_net_obs_events_sampled_out_total"); got != 90 {
		t.Errorf("sampled out = %v", got)
	}
	if got := m.ByLabel("ebpf_net_obs_map_capacity", "map"); got["conns"] != 65536 {
		t.Errorf("capacity = %v", got)
	}
	if _, err := ParseMetrics(strings.NewReader("x{a=\"b\"} notanumber\n")); err == nil {
		t.Error("bad value accepted")
	}
}

func TestScrapeAndHealthy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, fixture)
	}))
	defer srv.Close()
	if Healthy(context.Background(), srv.URL+"/healthz") {
		t.Error("503 counted as healthy")
	}
	m, err := Scrape(context.Background(), srv.URL+"/metrics")
	if err != nil || m.Sum("ebpf_net_obs_map_entries") != 12 {
		t.Errorf("scrape: %v %v", m, err)
	}
}

func TestProcReadsThisProcess(t *testing.T) {
	pids := Tree(os.Getpid())
	if len(pids) == 0 || pids[0] != os.Getpid() {
		t.Fatalf("Tree = %v", pids)
	}
	x := 0
	for i := 0; i < 30_000_000; i++ {
		x += i
	}
	_ = x
	if CPUNs(pids) <= 0 {
		t.Error("no CPU time read for a busy process")
	}
	if PeakRSS(pids) < 1<<20 {
		t.Errorf("peak RSS %d implausibly small", PeakRSS(pids))
	}
	if objs := HeldObjects(pids); len(objs.ProgIDs) != 0 || objs.MapMemlock() != 0 {
		t.Errorf("test process holds BPF objects? %+v", objs)
	}
}

// TestCPUNsIsPrecise: CPU time agrees with the kernel's own account of this
// process (getrusage) to a millisecond, while a thread is busy, which the
// 10 ms ticks of /proc/<pid>/stat cannot (nor schedstat, which lags behind
// a running thread).
func TestCPUNsIsPrecise(t *testing.T) {
	if _, err := processCPUNs(os.Getpid()); err != nil {
		t.Skipf("no process CPU-time clock (%v): CPU time falls back to 10 ms ticks", err)
	}
	runtime.LockOSThread() // one busy thread; the others stay asleep
	defer runtime.UnlockOSThread()
	pids := []int{os.Getpid()}
	for i := 0; i < 5; i++ {
		r0, c0 := rusageNs(t), CPUNs(pids)
		for rusageNs(t)-r0 < 3e6 { // burn 3 ms
		}
		r1, c1 := rusageNs(t), CPUNs(pids)
		if d := (c1 - c0) - (r1 - r0); d > 1e6 || d < -1e6 {
			t.Fatalf("CPUNs moved %.2f ms while getrusage moved %.2f ms", float64(c1-c0)/1e6, float64(r1-r0)/1e6)
		}
	}
}

func rusageNs(t *testing.T) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func TestParseFDInfo(t *testing.T) {
	f := parseFDInfo([]byte("pos:\t0\nflags:\t02000002\nmap_type:\t1\nmap_id:\t42\nmemlock:\t8192\n"))
	if f["map_id"] != 42 || f["memlock"] != 8192 {
		t.Errorf("fdinfo %v", f)
	}
}

func TestMeasureStatsCost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load a BPF program")
	}
	c, err := MeasureStatsCost()
	if err != nil {
		t.Fatal(err)
	}
	if c.OffNsPerRun <= 0 || c.OnNsPerRun <= 0 {
		t.Errorf("cost %+v", c)
	}
	t.Logf("BPF stats: %.1f ns/run off, %.1f on, +%.1f", c.OffNsPerRun, c.OnNsPerRun, c.AddedNsPerRun)
}
