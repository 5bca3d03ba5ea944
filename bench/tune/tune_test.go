package tune

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
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
	}{{20, 1, 0}, {5, 10, 1}, {2, 100, 10}}
	for _, tc := range cases {
		ch, err := Choose(f, tc.budget, "crr")
		if err != nil {
			t.Fatal(err)
		}
		if ch.Best == nil || int(ch.Best.SampleRate) != tc.rate {
			t.Errorf("budget %v: chose %v, want rate %d", tc.budget, ch.Best, tc.rate)
			continue
		}
		if ch.Best.Workload != "crr-64" || ch.Best.BPFStats != matrix.StatsSampled {
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
