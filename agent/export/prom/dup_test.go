package prom

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/conntrack"
	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
)

// Two connections with one 4-tuple inside the retention (a client port
// reused after TIME_WAIT) give one series, the newest, and a valid scrape.
func TestReusedTupleOneSeries(t *testing.T) {
	now := time.Unix(1000, 0)
	tb := conntrack.New(conntrack.Options{MaxSeries: 10, Now: func() time.Time { return now }})
	for i, sent := range []uint64{111, 222} {
		ev := bpf.TcpobsConnEvent{Sk: uint64(0x1000 + i), BytesSent: sent}
		ev.State.StartNs = uint64(i + 1)
		ev.State.Family, ev.State.Sport, ev.State.Dport = 2, 40000, 80
		ev.State.Saddr = [16]uint8{127, 0, 0, 1}
		ev.State.Daddr = [16]uint8{127, 0, 0, 1}
		ev.State.Owner.Pid = 42
		tb.Close(&ev)
		now = now.Add(time.Second)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewConnCollector(tb))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ebpf_net_obs_connection_bytes_sent_total" {
			continue
		}
		if n := len(mf.GetMetric()); n != 1 {
			t.Fatalf("%d series for one 4-tuple, want 1", n)
		}
		if v := mf.GetMetric()[0].GetCounter().GetValue(); v != 222 {
			t.Errorf("series shows %v bytes, want the newest connection's 222", v)
		}
		return
	}
	t.Fatal("no bytes_sent series")
}
