package probe

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
)

func TestParseUsage(t *testing.T) {
	total, sys := parseUsage([]byte("usage_usec 342421\nuser_usec 330736\nsystem_usec 11684\nnice_usec 0\n"))
	if total != 342421000 || sys != 11684000 {
		t.Errorf("usage %d, system %d", total, sys)
	}
	if total, sys := parseUsage([]byte("garbage")); total != 0 || sys != 0 {
		t.Errorf("garbage read as %d, %d", total, sys)
	}
}

func TestParseBusy(t *testing.T) {
	// user nice system idle iowait irq softirq steal: busy = all but idle and iowait
	got := parseBusy([]byte("cpu  4424 1 1982 319936 705 3 20 7 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"))
	if want := int64(4424+1+1982+3+20+7) * int64(time.Second) / clockTick; got != want {
		t.Errorf("busy %d ns, want %d", got, want)
	}
	if parseBusy([]byte("intr 5\n")) != 0 {
		t.Error("a file without a cpu line read as busy")
	}
}

// A process started in the cgroup is charged to it, and kernel time shows
// as system time: what bench's CPU per operation is made of.
func TestCgroupChargesItsProcesses(t *testing.T) {
	privtest.Require(t)
	g, err := NewCgroup("ebpf-net-obs-probe-test")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	total0, sys0 := g.Usage()
	// a child that spends its time in system calls
	cmd := g.Into(exec.Command("sh", "-c", "i=0; while [ $i -lt 3000 ]; do cat /proc/self/stat >/dev/null; i=$((i+1)); done"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	total, sys := g.Usage()
	if total <= total0 || sys <= sys0 || sys-sys0 > total-total0 {
		t.Errorf("cgroup usage %d -> %d ns, system %d -> %d ns", total0, total, sys0, sys)
	}
	if _, err := os.Stat(g.Path); err != nil {
		t.Fatal(err)
	}
}
