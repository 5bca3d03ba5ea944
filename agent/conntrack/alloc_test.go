package conntrack_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/conntrack"
	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
)

// workload is a recurring stream of close records: a batch of connections
// closes, the clock passes the retention, Sweep folds them onto the free
// list, and the next batch reuses them.
type workload struct {
	tb    *conntrack.Table
	clk   *clock
	evs   []bpf.TcpobsConnEvent
	round uint64
}

const batch = 64

func newWorkload(tb testing.TB, maxSeries int, r conntrack.Resolver) *workload {
	t, clk := newTable(conntrack.Options{MaxSeries: maxSeries, Retention: 30 * time.Second, Resolver: r})
	w := &workload{tb: t, clk: clk, evs: make([]bpf.TcpobsConnEvent, batch)}
	for i := range w.evs {
		sp := spec{src: "10.0.0.1:40000", dst: "10.0.0.2:5432", pid: 4242, comm: "psql",
			dir: conntrack.DirActive, flags: est}
		w.evs[i] = bpf.TcpobsConnEvent{Sk: uint64(0x1000 + i), BytesSent: 100, BytesReceived: 200, State: sp.state(tb)}
		w.evs[i].State.Sport = uint16(40000 + i)
		w.evs[i].State.RttSamples, w.evs[i].State.RttHist[5] = 3, 3
	}
	return w
}

// run closes one batch and sweeps it a minute later.
func (w *workload) run() {
	w.round++
	base := time.Duration(w.round) * time.Minute
	for i := range w.evs {
		ev := &w.evs[i]
		ev.State.StartNs = ktime(base)
		ev.EndNs = ktime(base + time.Second)
		w.tb.Close(ev)
	}
	w.clk.set(base + time.Minute)
	w.tb.Sweep()
}

// TestTableCloseAllocations: Close on a steady workload reuses swept
// connections and interned names, keys rollups without formatting, and
// leaves label strings to scrape time. Measured per close record; the
// remainder is the closed-order slice growing now and then.
func TestTableCloseAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts: not in -short")
	}
	for _, tc := range []struct {
		name   string
		series int
	}{{"rollups only (over the series cap)", 0}, {"with per-connection series", 1 << 20}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorkload(t, tc.series, nil)
			for range 5 { // warm up: maps, free list, order slice at their steady sizes
				w.run()
			}
			per := testing.AllocsPerRun(50, w.run) / batch
			t.Logf("%.2f allocations per close record", per)
			if per >= 1 {
				t.Errorf("Table.Close allocates %.2f times per close record in steady state, want < 1 amortised", per)
			}
		})
	}
}

func BenchmarkTableClose(b *testing.B) {
	// A resolver that knows the owner and the peer, as in a cluster.
	pods := fakeResolver{
		workloads: map[uint64]conntrack.Workload{0: {ContainerID: "c1", PodUID: "u1", Pod: "client", Namespace: "shop"}},
		peers:     map[netip.Addr][2]string{netip.MustParseAddr("10.0.0.2"): {"shop", "db"}},
	}
	for _, bc := range []struct {
		name     string
		series   int
		resolver conntrack.Resolver
	}{{"rollups-only", 0, nil}, {"with-series", 1 << 20, nil}, {"with-series-and-pods", 1 << 20, pods}} {
		b.Run(bc.name, func(b *testing.B) {
			w := newWorkload(b, bc.series, bc.resolver)
			w.run()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w.run()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/close")
		})
	}
}
