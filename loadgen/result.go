package loadgen

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Result is what `loadgen client --json` prints: one JSON object. The first
// seven fields are the contract users script against (docs/loadgen.md); the rest describe the run so a
// result file stands on its own.
type Result struct {
	Mode          Mode    `json:"mode"`
	Ops           uint64  `json:"ops"`            // operations started in the measured window and completed
	OpsPerSec     float64 `json:"ops_per_sec"`    // Ops / measured duration
	Bytes         uint64  `json:"bytes"`          // payload bytes moved by the client, both directions, headers excluded
	ThroughputBps float64 `json:"throughput_bps"` // Bytes*8 / measured duration: bits per second
	Errors        uint64  `json:"errors"`         // failed operations and reconnects, warm-up included
	Latency       Latency `json:"latency_ns"`
	FirstError    string  `json:"first_error,omitempty"` // an example of what failed

	DurationSec float64 `json:"duration_s"` // measured duration (warm-up excluded; shorter if interrupted)
	WarmupSec   float64 `json:"warmup_s"`
	Concurrency int     `json:"concurrency"`
	Size        int     `json:"size"`
	Rate        float64 `json:"rate"` // target ops/s; 0: closed loop
}

// Latency percentiles of the operations, in nanoseconds. Percentiles carry the
// histogram's error (at most 0.39%); Max and Mean are exact.
type Latency struct {
	P50  uint64 `json:"p50"`
	P90  uint64 `json:"p90"`
	P99  uint64 `json:"p99"`
	P999 uint64 `json:"p999"`
	Max  uint64 `json:"max"`
	Mean uint64 `json:"mean"`
}

func newResult(cfg Config, measured time.Duration, total *worker) Result {
	secs := measured.Seconds()
	h := &total.hist
	res := Result{
		Mode:          cfg.Mode,
		Ops:           total.ops,
		OpsPerSec:     float64(total.ops) / secs,
		Bytes:         total.bytes,
		ThroughputBps: float64(total.bytes) * 8 / secs,
		Errors:        total.errors,
		Latency: Latency{
			P50:  h.Quantile(0.50),
			P90:  h.Quantile(0.90),
			P99:  h.Quantile(0.99),
			P999: h.Quantile(0.999),
			Max:  h.Max(),
			Mean: uint64(math.Round(h.Mean())),
		},
		DurationSec: secs,
		WarmupSec:   cfg.Warmup.Seconds(),
		Concurrency: cfg.Concurrency,
		Size:        cfg.Size,
		Rate:        cfg.Rate,
	}
	if total.first != nil {
		res.FirstError = total.first.Error()
	}
	return res
}

// Summary is the human-readable report printed without --json.
func (r Result) Summary() string {
	var b strings.Builder
	loop := "closed loop"
	if r.Rate > 0 {
		loop = fmt.Sprintf("open loop at %.0f ops/s", r.Rate)
	}
	fmt.Fprintf(&b, "mode %s, %d connection(s), %d-byte %s, %s, %.3gs measured after %.3gs warm-up\n",
		r.Mode, r.Concurrency, r.Size, map[bool]string{true: "writes", false: "messages"}[r.Mode == ModeStream],
		loop, r.DurationSec, r.WarmupSec)
	fmt.Fprintf(&b, "  ops        %d (%.0f/s)\n", r.Ops, r.OpsPerSec)
	fmt.Fprintf(&b, "  throughput %s (%d bytes)\n", bitRate(r.ThroughputBps), r.Bytes)
	fmt.Fprintf(&b, "  errors     %d", r.Errors)
	if r.FirstError != "" {
		fmt.Fprintf(&b, " (first: %s)", r.FirstError)
	}
	b.WriteString("\n")
	l := r.Latency
	fmt.Fprintf(&b, "  latency    p50 %v  p90 %v  p99 %v  p99.9 %v  max %v  mean %v\n",
		ns(l.P50), ns(l.P90), ns(l.P99), ns(l.P999), ns(l.Max), ns(l.Mean))
	return b.String()
}

func ns(v uint64) time.Duration {
	d := time.Duration(v)
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(time.Microsecond)
	case d >= time.Microsecond:
		return d.Round(10 * time.Nanosecond)
	}
	return d
}

func bitRate(bps float64) string {
	units := []string{"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"}
	i := 0
	for bps >= 1000 && i < len(units)-1 {
		bps /= 1000
		i++
	}
	return fmt.Sprintf("%.2f %s", bps, units[i])
}
