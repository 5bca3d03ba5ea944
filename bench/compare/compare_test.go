package compare

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results/resultstest"
)

func TestRegressionVersusNoise(t *testing.T) {
	old := resultstest.File("6.18", 1, resultstest.Curve(3, 1, 0.3, 0.02, 10)...)
	noisy := resultstest.File("6.18", 2, resultstest.Curve(3, 1, 0.3, 0.02, 10)...)
	worse := resultstest.File("6.18", 3, resultstest.Curve(15, 1, 0.3, 0.02, 10)...)

	rows := Cells(old, noisy, th)
	if Regressed(rows) {
		var b bytes.Buffer
		Print(&b, rows, th)
		t.Errorf("same overhead flagged as regression:\n%s", b.String())
	}
	rows = Cells(old, worse, th)
	if !Regressed(rows) {
		t.Fatal("3% -> 15% not flagged")
	}
	for _, r := range rows {
		if r.Metric != results.MetricThroughput {
			continue
		}
		if r.Key == "crr-64/ringbuf/hash/rate=1" && r.Verdict != Regression {
			t.Errorf("%s: %s (diff %+v)", r.Key, r.Verdict, r.Diff)
		}
		if r.Key == "crr-64/ringbuf/hash/rate=10" && r.Verdict != Same {
			t.Errorf("%s unchanged but %s", r.Key, r.Verdict)
		}
	}
	// a 12-point growth does not exceed a 20-point threshold
	if Regressed(Cells(old, worse, Thresholds{Pct: 20, Ns: 200})) {
		t.Error("growth below the threshold flagged")
	}
	if !strings.Contains(printed(Cells(worse, old, th)), Improved) {
		t.Error("the reverse comparison shows no improvement")
	}
}

func TestMissingCellsAreReportedNotFailed(t *testing.T) {
	old := resultstest.File("6.18", 1, resultstest.Curve(3, 1, 0.3, 0.02, 6)...)
	cur := resultstest.File("6.18", 1, resultstest.Curve(3, 1, 0.3, 0.02, 6)[:3]...)
	rows := Cells(old, cur, th)
	if Regressed(rows) {
		t.Error("missing cells counted as regressions")
	}
	if !strings.Contains(printed(rows), "not measured in NEW") {
		t.Error("missing cells not shown")
	}
}

var th = Thresholds{Pct: 2, Ns: 200}

func printed(rows []Row) string {
	var b bytes.Buffer
	Print(&b, rows, th)
	return b.String()
}

// Two observers in one run, the new one costlier by 500 ns per operation:
// the paired comparison flags the accounted cost, and not when they are
// the same.
func TestObserversPairedGate(t *testing.T) {
	spec := func(name string, added float64) resultstest.Spec {
		return resultstest.Spec{Workload: "crr-64", Transport: "ringbuf", MapType: "hash", SampleRate: 1,
			Observer: name, Overhead: 5, Noise: 0.02, Pairs: 12, AddedNs: added}
	}
	for _, tc := range []struct {
		added float64
		want  bool
	}{{0, false}, {500, true}} {
		f := resultstest.File("6.18", 7, spec("old", 0), spec("new", tc.added))
		rows, err := Observers(f, "old", "new", th)
		if err != nil {
			t.Fatal(err)
		}
		var acc *Row
		for i := range rows {
			if rows[i].Metric == results.MetricAccounted {
				acc = &rows[i]
			}
		}
		if acc == nil {
			t.Fatalf("no accounted row in %v", rows)
		}
		if got := acc.Verdict == Regression; got != tc.want {
			t.Errorf("+%v ns/op: verdict %s (diff %+v), want regression=%v\n%s", tc.added, acc.Verdict, acc.Diff, tc.want, printed(rows))
		}
		if tc.added > 0 && (acc.Diff.Median < 0.8*tc.added || acc.Diff.Median > 1.2*tc.added) {
			t.Errorf("change %+.0f ns/op, want about %+.0f", acc.Diff.Median, tc.added)
		}
	}
	f := resultstest.File("6.18", 7, spec("old", 0), spec("new", 0))
	if _, err := Observers(f, "old", "newer", th); err == nil || !strings.Contains(err.Error(), "it has: new, old") {
		t.Errorf("unknown observer: %v", err)
	}
}

// Power: an again arm gives the false-alarm rate and the detectable cost,
// an inject arm the detection rate of its known cost.
func TestPowerMeasuredFromArms(t *testing.T) {
	base := resultstest.Spec{Workload: "crr-64", Transport: "ringbuf", MapType: "hash", SampleRate: 1, Overhead: 5, Noise: 0.02, Pairs: 16}
	again, inject, aa := base, base, base
	again.Arm, inject.Arm, inject.AddedNs = matrix.ArmAgain, matrix.ArmInject, 500
	aa.SampleRate, aa.Overhead = matrix.Off, 0
	f := resultstest.File("6.18", 3, aa, base, again, inject)
	power := Power(f, th)
	var acc, tput *results.Power
	for i := range power {
		switch results.Metric(power[i].Metric) {
		case results.MetricAccounted:
			acc = &power[i]
		case results.MetricThroughput:
			tput = &power[i]
		}
	}
	if acc == nil || tput == nil {
		t.Fatalf("power %+v", power)
	}
	if acc.FalseAlarmRate > 0.1 || acc.DetectionRate < 0.95 || acc.Injected < 400 || acc.Injected > 600 {
		t.Errorf("accounted: false alarms %.2f, detection %.2f of %+.0f ns/op", acc.FalseAlarmRate, acc.DetectionRate, acc.Injected)
	}
	// the accounted runs vary by 2% of ~3 µs per op: a change well under
	// the injected 500 ns is detectable, one under the threshold is not
	if acc.Detectable <= th.Ns || acc.Detectable >= 500 {
		t.Errorf("accounted: detectable %.0f ns/op, want between the threshold and 500", acc.Detectable)
	}
	if tput.AAPairs != 16 || tput.Detectable <= th.Pct {
		t.Errorf("throughput: %d A/A pairs, detectable %.1f points", tput.AAPairs, tput.Detectable)
	}
}

func TestBiasedAACell(t *testing.T) {
	aa := resultstest.Spec{Workload: "crr-64", SampleRate: matrix.Off, Noise: 0.01, Pairs: 10}
	if b := Biased(resultstest.File("6.18", 1, aa)); len(b) != 0 {
		t.Errorf("an unbiased A/A flagged: %v", b)
	}
	aa.Overhead = 6 // the "observer-less" arm runs 6% slower: the instrument moved
	if b := Biased(resultstest.File("6.18", 1, aa)); len(b) != 1 {
		t.Errorf("a biased A/A not flagged: %v", b)
	}
}
