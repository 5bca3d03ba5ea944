package tune

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results/resultstest"
)

func TestChoosesHighestFidelityWithinBudget(t *testing.T) {
	// true overheads: rate 1 = 8%, 10 = 3%, 100 = 0.5%; lru_hash at rate 1 is
	// also 8%, perf 10.4%
	f := resultstest.File("6.18", 1, resultstest.Curve(8, 3, 0.5, 0.01, 10)...)
	cases := []struct {
		budget float64
		rate   int
		next   int
	}{{budgetFor(t, f, 1), 1, 0}, {budgetFor(t, f, 10), 10, 1}, {budgetFor(t, f, 100), 100, 10}}
	for _, tc := range cases {
		ch, err := Choose(f, tc.budget, "crr")
		if err != nil {
			t.Fatal(err)
		}
		if ch.Best == nil || int(ch.Best.SampleRate) != tc.rate {
			t.Errorf("budget %v: chose %v, want rate %d", tc.budget, ch.Best, tc.rate)
			continue
		}
		if ch.Best.Workload != "crr-64" || ch.Best.BPFStats != matrix.DefaultStats {
			t.Errorf("budget %v: chose %s", tc.budget, ch.Best.Key)
		}
		if ch.Confidence < 0.95 {
			t.Errorf("budget %v: confidence %v below the CI's 97.5%%", tc.budget, ch.Confidence)
		}
		if tc.next == 0 && ch.NextUp != nil || tc.next != 0 && (ch.NextUp == nil || int(ch.NextUp.SampleRate) != tc.next) {
			t.Errorf("budget %v: next step %v", tc.budget, ch.NextUp)
		}
		var b bytes.Buffer
		Print(&b, ch, Cheapest(f, "crr"))
		if !strings.Contains(b.String(), "recommended: --sample-rate") {
			t.Errorf("output:\n%s", b.String())
		}
	}
	// at rate 1, the cheaper of hash / lru_hash / perf wins the tie on fidelity
	ch, _ := Choose(f, 20, "crr-64")
	if ch.Best.Transport == "perf" {
		t.Errorf("tie-break picked the costlier perf transport: %s", ch.Best.Key)
	}
}

func TestNothingFits(t *testing.T) {
	f := resultstest.File("6.18", 1, resultstest.Curve(8, 3, 2, 0.01, 10)...)
	ch, err := Choose(f, 0.5, "crr")
	if err != nil || ch.Best != nil {
		t.Fatalf("budget 0.5: %v %v", ch.Best, err)
	}
	var b bytes.Buffer
	Print(&b, ch, Cheapest(f, "crr"))
	if !strings.Contains(b.String(), "no configuration stays within") || !strings.Contains(b.String(), "--sample-rate 100") {
		t.Errorf("output:\n%s", b.String())
	}
	if _, err := Choose(f, 5, "udp"); err == nil {
		t.Error("unknown workload accepted")
	}
}

// budgetFor returns a budget the cheapest crr cell at rate fits with 95%
// confidence and no cell at a lower rate does: halfway between their CIs'
// upper bounds (one point above it at rate 1). Derived from the synthetic
// cells rather than fixed, so it holds whatever their exact CIs are.
func budgetFor(t *testing.T, f *results.File, rate int) float64 {
	t.Helper()
	fits, above := math.Inf(1), math.Inf(1)
	for _, c := range Cheapest(f, "crr") {
		switch r := int(c.SampleRate); {
		case r == rate:
			fits = math.Min(fits, c.CIHigh)
		case r < rate:
			above = math.Min(above, c.CIHigh)
		}
	}
	if math.IsInf(fits, 1) || fits >= above {
		t.Fatalf("synthetic cells: no budget picks rate %d (its CI tops out at %v, a lower rate's at %v)", rate, fits, above)
	}
	if math.IsInf(above, 1) {
		return fits + 1
	}
	return (fits + above) / 2
}

func TestPrintCostAndFidelity(t *testing.T) {
	const keeps10 = "  keeps the per-ACK RTT samples of about 1 in 10 connections; bytes, retransmits and lifecycle stay exact\n"
	const keeps100 = "  keeps the per-ACK RTT samples of about 1 in 100 connections; bytes, retransmits and lifecycle stay exact\n"
	const keeps1 = "  keeps every per-ACK RTT sample; bytes, retransmits and lifecycle stay exact\n"
	const exact = "  fidelity: exact (every RTT sample)\n"
	const missing = "  fidelity not measured in this run (bench run --profile sampling measures it)\n"
	const fid10 = "  fidelity vs rate 1 on the same traffic: p50 +1.5%, p90 -2.0%, p99 +4.2%, KS 0.031 (1000 of 10000 RTT samples kept)\n"
	rate10 := results.Fidelity{Workload: "crr-64", SampleRate: 10, Samples: 1000, ReferenceSamples: 10000,
		QuantileErrorPct: map[string]float64{"p50": 1.5, "p90": -2, "p99": 4.24}, KS: 0.0312}
	// decoys: another workload's rate 100, and rate 4, which was not a cell
	decoys := []results.Fidelity{
		{Workload: "rr-64", SampleRate: 100, Samples: 5, ReferenceSamples: 500, QuantileErrorPct: map[string]float64{"p50": 50}, KS: 0.5},
		{Workload: "crr-64", SampleRate: 4, Samples: 2500, ReferenceSamples: 10000, QuantileErrorPct: map[string]float64{"p50": 9}, KS: 0.2},
	}
	curve := resultstest.Curve(8, 3, 0.5, 0.01, 10)
	probe := resultstest.File("6.18", 1, curve...)
	b1, b10, b100 := budgetFor(t, probe, 1), budgetFor(t, probe, 10), budgetFor(t, probe, 100)
	cases := []struct {
		name     string
		budget   float64
		fidelity []results.Fidelity
		want     []string // in this order
		not      []string
	}{
		{"fidelity of the choice and of rate 1 above it", b10, append([]results.Fidelity{rate10}, decoys...),
			[]string{"recommended: --sample-rate 10 ", keeps10, "  throughput overhead ", "  cost: ", fid10,
				"next step up: --sample-rate 1 ", keeps1, "  cost: ", exact},
			[]string{"not measured"}},
		{"choice not measured, the step up measured", b100, append([]results.Fidelity{rate10}, decoys...),
			[]string{"recommended: --sample-rate 100 ", keeps100, "  cost: ", missing,
				"next step up: --sample-rate 10 ", keeps10, "  cost: ", fid10},
			[]string{"KS 0.500", "p50 +50"}},
		{"nothing measured", b100, nil,
			[]string{"recommended: --sample-rate 100 ", missing, "next step up: --sample-rate 10 ", keeps10, missing},
			[]string{"fidelity vs rate 1"}},
		{"rate 1 is exact whatever was measured", b1, decoys,
			[]string{"recommended: --sample-rate 1 ", keeps1, exact, "next step up: none, rate 1 already keeps every RTT sample\n"},
			[]string{"not measured", "fidelity vs rate 1"}},
	}
	for _, tc := range cases {
		f := resultstest.File("6.18", 1, curve...)
		f.Meta.Fidelity = tc.fidelity
		ch, err := Choose(f, tc.budget, "crr")
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		Print(&b, ch, Cheapest(f, "crr"))
		out := b.String()
		rest := out
		for _, w := range tc.want {
			i := strings.Index(rest, w)
			if i < 0 {
				t.Errorf("%s: %q missing or out of order in:\n%s", tc.name, w, out)
				break
			}
			rest = rest[i+len(w):]
		}
		for _, n := range append(tc.not, "events;", "keeps 1 in", "every event") {
			if strings.Contains(out, n) {
				t.Errorf("%s: output has %q:\n%s", tc.name, n, out)
			}
		}
		if testing.Verbose() {
			t.Logf("%s:\n%s", tc.name, out)
		}
	}
}

func TestFidelityMatchesWorkloadByMode(t *testing.T) {
	f := resultstest.File("6.18", 1, resultstest.Curve(8, 3, 0.5, 0.01, 10)...)
	// labelled with the mode only, and with a quantile left out (undefined)
	f.Meta.Fidelity = []results.Fidelity{{Workload: "crr", SampleRate: 10, Samples: 90, ReferenceSamples: 1000,
		QuantileErrorPct: map[string]float64{"p50": -0.04, "p90": 12.34}, KS: 0.1}}
	ch, err := Choose(f, budgetFor(t, f, 10), "crr-64")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	Print(&b, ch, Cheapest(f, "crr-64"))
	want := "  fidelity vs rate 1 on the same traffic: p50 -0.0%, p90 +12.3%, p99 n/a, KS 0.100 (90 of 1000 RTT samples kept)\n"
	if !strings.Contains(b.String(), want) {
		t.Errorf("want %q in:\n%s", want, b.String())
	}
}
