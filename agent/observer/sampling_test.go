package observer

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/config"
)

// Sampling thins the per-ACK RTT samples, and the ones it keeps are an
// unbiased subset: two observers watch the same traffic at the same time,
// one keeping every sample and one keeping 1 in 8, and the kept RTT
// distribution matches the full one (chi-square), as do the means, while
// the kept count is 1/8 within binomial error.
func TestSamplingKeepsRTTDistributionUnbiased(t *testing.T) {
	const rate = 8
	full := start(t, nil)
	thin := start(t, func(c *config.Config) { c.SampleRate = rate })

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveEcho(ln)
	// Request/response with varied sizes and pauses, so RTTs spread over
	// several buckets.
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			buf := make([]byte, 256)
			end := time.Now().Add(2 * time.Second)
			for i := 0; time.Now().Before(end); i++ {
				if _, err := c.Write(buf[:16+(i*37+w)%240]); err != nil {
					return
				}
				if _, err := c.Read(buf); err != nil {
					return
				}
				if i%50 == 0 {
					time.Sleep(time.Duration(i%7) * 100 * time.Microsecond)
				}
			}
		}(w)
	}
	wg.Wait()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	want := map[string]string{"service_port": port, "direction": "active"}
	// Compare only once both observers have applied all four close records
	// (slow consumers, e.g. under emulation, would otherwise be caught mid-way).
	for _, ob := range []*running{full, thin} {
		eventually(t, 20*time.Second, "close records applied", func() (bool, string) {
			v := ob.value(t, "ebpf_net_obs_connections_closed_total", want)
			return v == 4, fmt.Sprintf("closed %v of 4", v)
		})
	}
	hf, ht := histogram(t, full, want), histogram(t, thin, want)
	nf, nt := float64(hf.GetSampleCount()), float64(ht.GetSampleCount())
	if nf < 5000 {
		t.Fatalf("only %v RTT samples in the full observer; traffic too thin to judge", nf)
	}
	// Kept count: binomial(nf, 1/rate).
	p := 1.0 / rate
	sd := math.Sqrt(nf * p * (1 - p))
	if math.Abs(nt-nf*p) > 5*sd {
		t.Errorf("kept %v of %v samples; want %v ± %.0f (5σ)", nt, nf, nf*p, 5*sd)
	}
	// The binned CDFs agree (two-sample Kolmogorov–Smirnov bound at
	// p = 0.01). Means are not compared: one delayed-ACK outlier of tens of
	// milliseconds moves a mean of a few thousand samples by several µs.
	cf, ct := bucketCounts(hf), bucketCounts(ht)
	var accF, accT, ks float64
	for i := range cf {
		accF += cf[i] / nf
		accT += ct[i] / nt
		ks = math.Max(ks, math.Abs(accF-accT))
	}
	ksCrit := 1.63 * math.Sqrt((nf+nt)/(nf*nt))
	if ks > ksCrit {
		t.Errorf("kept RTT CDF departs from the full one by %.4f (> %.4f)", ks, ksCrit)
	}
	mf, mt := hf.GetSampleSum()/nf, ht.GetSampleSum()/nt
	// Distribution: chi-square of the kept bucket counts against the full
	// distribution, pooling sparse buckets.
	of, ot := bucketCounts(hf), bucketCounts(ht)
	var chi2 float64
	var df int
	var poolE, poolO float64
	for i := range of {
		e := nt * of[i] / nf
		poolE += e
		poolO += ot[i]
		if poolE >= 20 {
			chi2 += (poolO - poolE) * (poolO - poolE) / poolE
			df++
			poolE, poolO = 0, 0
		}
	}
	df--
	if df < 2 {
		t.Fatalf("RTT samples fall in too few buckets (%d) to test the shape", df+1)
	}
	// Critical value at p = 0.001 (Wilson–Hilferty approximation).
	z := 3.09
	crit := float64(df) * math.Pow(1-2/(9*float64(df))+z*math.Sqrt(2/(9*float64(df))), 3)
	t.Logf("samples all=%v kept=%v (1/%d expected %.0f); mean all=%.1fµs kept=%.1fµs; KS=%.4f (crit %.4f); chi2=%.1f df=%d crit(0.001)=%.1f",
		nf, nt, rate, nf*p, mf*1e6, mt*1e6, ks, ksCrit, chi2, df, crit)
	if chi2 > crit {
		t.Errorf("kept RTT distribution differs from the full one: chi2 %.1f > %.1f (df %d)", chi2, crit, df)
	}
	k, _ := thin.KernelCounters()
	if k["rtt_sampled_out"] == 0 {
		t.Error("sampled-out counter did not move")
	}
}

func histogram(t *testing.T, r *running, want map[string]string) *dto.Histogram {
	t.Helper()
	ms := r.series(t, "ebpf_net_obs_rtt_seconds", want)
	if len(ms) != 1 {
		t.Fatalf("rtt histogram for %v: %d series, want 1", want, len(ms))
	}
	return ms[0].GetHistogram()
}

// bucketCounts turns cumulative buckets into per-bucket counts (+Inf last).
func bucketCounts(h *dto.Histogram) []float64 {
	var out []float64
	var prev uint64
	for _, b := range h.GetBucket() {
		out = append(out, float64(b.GetCumulativeCount()-prev))
		prev = b.GetCumulativeCount()
	}
	return append(out, float64(h.GetSampleCount()-prev))
}
