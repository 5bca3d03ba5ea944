package fidelity

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
)

// bounds are the observer's: 1µs, 2µs, 4µs, ... 2^(n-2)µs, then +Inf.
func bounds(n int) []float64 {
	b := make([]float64, n)
	for i := 0; i < n-1; i++ {
		b[i] = math.Ldexp(1, i) * 1e-6
	}
	b[n-1] = math.Inf(1)
	return b
}

// hist puts counts[i] samples in the bucket with upper bound 2^i µs.
func hist(counts ...float64) Histogram { return FromCounts(bounds(len(counts)), counts) }

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*math.Max(math.Abs(a), math.Abs(b)) }

func TestQuantileInsideBucket(t *testing.T) {
	us := 1e-6
	cases := []struct {
		name string
		h    Histogram
		q    float64
		want float64
	}{
		// all in [2,4) µs: log-linear puts the median at 2·√2 µs
		{"median of one log2 bucket", hist(0, 0, 100, 0, 0, 0), 0.5, 2 * math.Sqrt2 * us},
		{"quarter of one log2 bucket", hist(0, 0, 100, 0, 0, 0), 0.25, 2 * math.Pow(2, 0.25) * us},
		{"lowest rank is the bucket's lower bound", hist(0, 0, 100, 0, 0, 0), 0, 2 * us},
		{"highest rank is the bucket's upper bound", hist(0, 0, 100, 0, 0, 0), 1, 4 * us},
		// the first bucket starts at 0: linear there
		{"first bucket is linear from 0", hist(100, 0, 0, 0), 0.5, 0.5 * us},
		// 50 in [1,2), 50 in [2,4): p50 is the boundary, p75 the middle of the second
		{"on a bucket boundary", hist(0, 50, 50, 0, 0), 0.5, 2 * us},
		{"three quarters", hist(0, 50, 50, 0, 0), 0.75, 2 * math.Sqrt2 * us},
		// p99 of 100 samples: rank 99, the 9th of the 10 in [8,16) µs
		{"tail bucket", hist(0, 0, 0, 90, 10, 0), 0.99, 8 * math.Pow(2, 0.9) * us},
		// the open bucket has no upper bound: its lower one, as Prometheus does
		{"+Inf bucket", hist(0, 0, 0, 10), 0.5, 4 * us},
	}
	for _, c := range cases {
		if got := Quantile(c.h, c.q); !near(got, c.want, 1e-12) {
			t.Errorf("%s: Quantile(%v) = %g, want %g", c.name, c.q, got, c.want)
		}
	}
	for _, q := range []float64{-0.1, 1.1, math.NaN()} {
		if !math.IsNaN(Quantile(hist(1, 2, 3), q)) {
			t.Errorf("Quantile(q=%v) is not NaN", q)
		}
	}
	if !math.IsNaN(Quantile(hist(0, 0, 0), 0.5)) || !math.IsNaN(Quantile(Histogram{}, 0.5)) {
		t.Error("quantile of an empty histogram is not NaN")
	}
}

func TestKS(t *testing.T) {
	a := hist(0, 0, 50, 50, 0, 0)
	cases := []struct {
		name string
		b    Histogram
		want float64
	}{
		{"identical", hist(0, 0, 50, 50, 0, 0), 0},
		{"same shape, a tenth of the samples", hist(0, 0, 5, 5, 0, 0), 0},
		// F_a = .5, 1 and F_b = 0, .5 at 4 µs and 8 µs
		{"shifted up one bucket", hist(0, 0, 0, 50, 50, 0), 0.5},
		{"shifted up two buckets", hist(0, 0, 0, 0, 50, 50), 1},
		{"one bucket of four moved", hist(0, 0, 40, 60, 0, 0), 0.1},
		{"empty", hist(0, 0, 0, 0, 0, 0), 1},
	}
	for _, c := range cases {
		if got := KS(a, c.b); !near(got, c.want, 1e-12) {
			t.Errorf("%s: KS = %v, want %v", c.name, got, c.want)
		}
		if got, back := KS(a, c.b), KS(c.b, a); got != back {
			t.Errorf("%s: KS not symmetric: %v vs %v", c.name, got, back)
		}
	}
	if KS(Histogram{}, Histogram{}) != 0 {
		t.Error("KS of two empty histograms is not 0")
	}
	// different bounds: a's CDF is a step function between its own bounds
	coarse := FromCounts([]float64{2e-6, 8e-6, math.Inf(1)}, []float64{0, 100, 0}) // all in [2,8) µs
	if got := KS(a, coarse); got != 0.5 {                                          // at 4 µs: a has .5, coarse still 0
		t.Errorf("KS across different bounds = %v, want 0.5", got)
	}
}

func TestCompare(t *testing.T) {
	ref := hist(0, 0, 30, 40, 20, 10, 0, 0)
	t.Run("identical", func(t *testing.T) {
		f := Compare(ref, ref)
		if f.KS != 0 || f.Samples != 100 || f.ReferenceSamples != 100 {
			t.Errorf("%+v", f)
		}
		for _, q := range Quantiles {
			if e, ok := f.QuantileErrorPct[q.Name]; !ok || e != 0 {
				t.Errorf("%s error %v (present %v), want 0", q.Name, e, ok)
			}
		}
	})
	t.Run("a tenth of the samples, same shape", func(t *testing.T) {
		f := Compare(ref, hist(0, 0, 3, 4, 2, 1, 0, 0))
		if f.Samples != 10 || f.ReferenceSamples != 100 || f.KS > 1e-12 {
			t.Errorf("%+v", f)
		}
		for _, q := range Quantiles {
			if e := f.QuantileErrorPct[q.Name]; math.Abs(e) > 1e-9 {
				t.Errorf("%s error %v, want 0", q.Name, e)
			}
		}
	})
	t.Run("every sample twice as slow", func(t *testing.T) {
		// one log2 bucket up: log-linear interpolation doubles every quantile
		f := Compare(ref, hist(0, 0, 0, 30, 40, 20, 10, 0))
		for _, q := range Quantiles {
			if e := f.QuantileErrorPct[q.Name]; !near(e, 100, 1e-9) {
				t.Errorf("%s error %v, want +100", q.Name, e)
			}
		}
		if !near(f.KS, 0.4, 1e-12) { // at 8 µs: .7 vs .3
			t.Errorf("KS %v, want 0.4", f.KS)
		}
	})
	t.Run("nothing kept", func(t *testing.T) {
		f := Compare(ref, hist(0, 0, 0, 0, 0, 0, 0, 0))
		if len(f.QuantileErrorPct) != 0 || f.KS != 1 || f.Samples != 0 {
			t.Errorf("%+v", f)
		}
		if _, err := json.Marshal(f); err != nil { // no NaN in results.json
			t.Error(err)
		}
	})
}

const exposition = `# HELP ebpf_net_obs_rtt_seconds Per-ACK RTT samples kept after sampling (log2 buckets from the kernel).
# TYPE ebpf_net_obs_rtt_seconds histogram
ebpf_net_obs_rtt_seconds_bucket{direction="active",process_name="loadgen",service_port="5201",le="1e-06"} 1
ebpf_net_obs_rtt_seconds_bucket{direction="active",process_name="loadgen",service_port="5201",le="2e-06"} 3
ebpf_net_obs_rtt_seconds_bucket{direction="active",process_name="loadgen",service_port="5201",le="4e-06"} 10
ebpf_net_obs_rtt_seconds_bucket{direction="active",process_name="loadgen",service_port="5201",le="+Inf"} 12
ebpf_net_obs_rtt_seconds_sum{direction="active",process_name="loadgen",service_port="5201"} 0.00004
ebpf_net_obs_rtt_seconds_count{direction="active",process_name="loadgen",service_port="5201"} 12
ebpf_net_obs_rtt_seconds_bucket{direction="passive",process_name="loadgen",service_port="5201",le="1e-06"} 0
ebpf_net_obs_rtt_seconds_bucket{direction="passive",process_name="loadgen",service_port="5201",le="2e-06"} 2
ebpf_net_obs_rtt_seconds_bucket{direction="passive",process_name="loadgen",service_port="5201",le="4e-06"} 4
ebpf_net_obs_rtt_seconds_bucket{direction="passive",process_name="loadgen",service_port="5201",le="+Inf"} 4
ebpf_net_obs_rtt_seconds_sum{direction="passive",process_name="loadgen",service_port="5201"} 0.00001
ebpf_net_obs_rtt_seconds_count{direction="passive",process_name="loadgen",service_port="5201"} 4
ebpf_net_obs_rtt_seconds_bucket{direction="active",process_name="curl",service_port="9095",le="1e-06"} 0
ebpf_net_obs_rtt_seconds_bucket{direction="active",process_name="curl",service_port="9095",le="2e-06"} 0
ebpf_net_obs_rtt_seconds_bucket{direction="active",process_name="curl",service_port="9095",le="4e-06"} 0
ebpf_net_obs_rtt_seconds_bucket{direction="active",process_name="curl",service_port="9095",le="+Inf"} 100
ebpf_net_obs_rtt_seconds_sum{direction="active",process_name="curl",service_port="9095"} 1
ebpf_net_obs_rtt_seconds_count{direction="active",process_name="curl",service_port="9095"} 100
# HELP ebpf_net_obs_connections_opened_total TCP connections opened.
# TYPE ebpf_net_obs_connections_opened_total counter
ebpf_net_obs_connections_opened_total{direction="active",process_name="loadgen",service_port="5201"} 7
`

func TestParse(t *testing.T) {
	all, err := Parse(strings.NewReader(exposition), RTTMetric, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Histogram{Bounds: []float64{1e-6, 2e-6, 4e-6, math.Inf(1)}, Cumulative: []float64{1, 5, 14, 116}}
	if !equal(all.Bounds, want.Bounds) || !equal(all.Cumulative, want.Cumulative) {
		t.Errorf("all series: %+v, want %+v", all, want)
	}
	port, err := Parse(strings.NewReader(exposition), RTTMetric, map[string]string{"service_port": "5201"})
	if err != nil {
		t.Fatal(err)
	}
	if !equal(port.Cumulative, []float64{1, 5, 14, 16}) {
		t.Errorf("service_port 5201: %+v", port)
	}
	none, err := Parse(strings.NewReader(exposition), RTTMetric, map[string]string{"service_port": "1"})
	if err != nil || none.Count() != 0 {
		t.Errorf("no matching series: %+v %v", none, err)
	}
	absent, err := Parse(strings.NewReader("# TYPE up gauge\nup 1\n"), RTTMetric, nil)
	if err != nil || absent.Count() != 0 {
		t.Errorf("absent metric: %+v %v", absent, err)
	}
	if _, err := Parse(strings.NewReader(exposition), "ebpf_net_obs_connections_opened_total", nil); err == nil {
		t.Error("a counter parsed as a histogram")
	}
	if _, err := Parse(strings.NewReader("not { an exposition"), RTTMetric, nil); err == nil {
		t.Error("garbage parsed")
	}
}

// TestParseExporterGolden reads the exporter's own golden exposition, so a
// renamed metric or changed buckets fail here rather than in a bench run.
func TestParseExporterGolden(t *testing.T) {
	const golden = "../../agent/export/prom/testdata/exposition.golden"
	data, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	// the golden elides the scrape duration, which varies: not a float
	text := strings.ReplaceAll(string(data), "<elided>", "0")
	h, err := Parse(strings.NewReader(text), RTTMetric, nil)
	if err != nil {
		t.Fatal(err)
	}
	var count float64
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, RTTMetric+"_count{") {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatal(err)
			}
			count += v
		}
	}
	if count == 0 || h.Count() != count {
		t.Errorf("parsed %v RTT samples, the golden's _count lines sum to %v", h.Count(), count)
	}
	if len(h.Bounds) < 2 || h.Bounds[0] != 1e-6 || h.Bounds[1] != 2e-6 || !math.IsInf(h.Bounds[len(h.Bounds)-1], 1) {
		t.Errorf("bounds %v are not the kernel's log2 buckets from 1 µs", h.Bounds)
	}
}
