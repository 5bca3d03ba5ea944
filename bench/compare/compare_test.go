package compare

import (
	"bytes"
	"strings"
	"testing"

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
