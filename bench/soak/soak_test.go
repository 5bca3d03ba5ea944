package soak

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// synthetic is n samples 5 s apart of f(t seconds).
func synthetic(n int, f func(t float64) float64) (ts, ys []float64) {
	for i := range n {
		t := 5 * float64(i)
		ts, ys = append(ts, t), append(ys, f(t))
	}
	return ts, ys
}

func TestFit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	noise := func(sd float64) float64 { return rng.NormFloat64() * sd }
	for _, c := range []struct {
		name  string
		f     func(t float64) float64
		grows bool
	}{
		{"flat", func(float64) float64 { return 100 }, false},
		{"noisy flat", func(float64) float64 { return 100 + noise(5) }, false},
		// fills up during warm-up, then stays: the warm-up drop keeps it flat
		{"warm-up then flat", func(t float64) float64 { return 100 * min(1, t/120) }, false},
		// significant but 0.5% over the run: allocator noise, not a leak
		{"tiny slope", func(t float64) float64 { return 100 + t/3600 }, false},
		{"growing", func(t float64) float64 { return 100 + t/100 + noise(5) }, true},
		{"growing in steps", func(t float64) float64 { return 100 + float64(int(t/300)*5) }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts, ys := synthetic(360, c.f) // 30 minutes at 5 s
			tr := Fit(ts, ys)
			if tr.Grows != c.grows {
				t.Errorf("grows = %v, want %v: %+v", tr.Grows, c.grows, tr)
			}
			if len(tr.BlockMedians) != Blocks {
				t.Errorf("%d block medians, want %d", len(tr.BlockMedians), Blocks)
			}
		})
	}
}

func TestFitSlope(t *testing.T) {
	ts, ys := synthetic(720, func(t float64) float64 { return 50 + 10*t/3600 }) // 10 per hour over 1 h
	tr := Fit(ts, ys)
	if d := tr.SlopePerHour - 10; d > 1e-6 || d < -1e-6 || tr.Low > 10 || tr.High < 10 {
		t.Errorf("slope %v [%v, %v], want 10 inside its interval", tr.SlopePerHour, tr.Low, tr.High)
	}
	if got := tr.At(tr.BlockHours[0]); got-tr.BlockMedians[0] > 1e-6 || tr.BlockMedians[0]-got > 1e-6 {
		t.Errorf("At(first block) = %v, want %v", got, tr.BlockMedians[0])
	}
}

func TestFitTooFew(t *testing.T) {
	ts, ys := synthetic(8, func(float64) float64 { return 1 })
	if tr := Fit(ts, ys); tr.Grows || tr.Verdict != "too few samples" {
		t.Errorf("8 samples: %+v, want too few samples", tr)
	}
}

func TestRollup(t *testing.T) {
	body := []byte(`# TYPE ebpf_net_obs_bytes_received_total counter
ebpf_net_obs_bytes_received_total{direction="active",process_name="loadgen",service_port="9200"} 64000
ebpf_net_obs_bytes_received_total{direction="passive",process_name="loadgen",service_port="9200"} 72000
ebpf_net_obs_bytes_received_total{direction="passive",process_name="other",service_port="9200"} 8
ebpf_net_obs_bytes_received_total{direction="passive",process_name="loadgen",service_port="92000"} 5
ebpf_net_obs_bytes_sent_total{direction="passive",process_name="loadgen",service_port="9200"} 64000
`)
	ex := exactness(body, "9200", ServerStats{BytesIn: 64000, BytesOut: 64000, Responses: 1000})
	if ex[0].Observer != 72008 || ex[0].Load != 72000 || ex[0].Drift != 8 {
		t.Errorf("received: %+v, want observer 72008, load 72000 (64000 + 8 × 1000), drift 8", ex[0])
	}
	if ex[1].Observer != 64000 || ex[1].Drift != 0 {
		t.Errorf("sent: %+v, want 64000, no drift", ex[1])
	}
}

func TestSave(t *testing.T) {
	ts, _ := synthetic(60, func(float64) float64 { return 0 })
	f := &File{Meta: Meta{Ran: "5m0s", Kernel: "6.1", Rate: 2000, Hold: 10, Sample: "5s"}}
	for i, x := range ts {
		f.Samples = append(f.Samples, Sample{T: x, RSSBytes: 50 << 20, MapEntries: 10 + float64(i), Series: 100, Goroutines: 12, FDs: 30})
	}
	f.Exactness = []Exact{{Counter: "bytes_sent_total", Observer: 1, Load: 1}}
	judge(f)
	if f.Pass || !strings.Contains(f.Verdict, "map entries") {
		t.Errorf("verdict %q: want FAIL naming the growing map entries", f.Verdict)
	}
	dir := t.TempDir()
	if err := Save(f, dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"soak.json", "report.md", "soak-rss.png", "soak-entries.png", "soak-fds.png"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	report, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	if !strings.Contains(string(report), "| map entries (conns) |") || !strings.Contains(string(report), "make soak SOAK=2h") {
		t.Errorf("report.md lacks the growth table or the command:\n%s", report)
	}
}
