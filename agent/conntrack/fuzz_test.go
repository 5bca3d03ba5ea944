package conntrack_test

import (
	"errors"
	"testing"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/conntrack"
	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
)

// FuzzTableRecords feeds the table what the kernel may send it, in any
// order: close records and flush passes over the connection map (with
// socket addresses reused, untracked records without a start, records
// arriving after their connection was retired, failed walks, sweeps). The
// input is a sequence of 16-byte operations whose fields are drawn from
// small ranges, so collisions between connections are common.
//
// After every operation the table's books must balance: every rollup's
// Active is Opened - Closed and never negative, the sum of Active is the
// number of open connections, histogram counts are their buckets' sum,
// rollup counters never fall, and no more connections have series than the
// cap allows.

const opSize = 16

// recordFrom builds a close record (and its state, for flushes) from one
// operation's bytes.
func recordFrom(c []byte) *bpf.TcpobsConnEvent {
	ev := &bpf.TcpobsConnEvent{}
	s := &ev.State
	ev.Sk = uint64(c[2]%8) + 1
	s.StartNs = uint64(c[3]%4) * uint64(time.Second) // 0: untracked
	ev.EndNs = s.StartNs + uint64(c[4])*uint64(100*time.Millisecond)
	if c[4] == 0xff {
		ev.EndNs = 0
	}
	s.Flags = uint32(c[5]) & 0x3f
	s.Sent = uint64(c[6]) * 1000
	s.AckedBase = uint64(c[7]%3) * 500
	s.BytesReceived = uint64(c[8]) * 1000
	ev.BytesSent, ev.BytesReceived = s.Sent-min(s.Sent, s.AckedBase), s.BytesReceived
	if c[7]&0x80 != 0 { // a close record may say less than a flush saw
		ev.BytesSent, ev.BytesReceived = ev.BytesSent/2, ev.BytesReceived/2
	}
	s.Retransmits, s.TotalRetrans = uint32(c[9]%8), uint32(c[9]>>5)
	ev.TotalRetrans = uint32(c[9] >> 3)
	s.SrttUs, ev.SrttUs, ev.RttvarUs = uint32(c[10])*100, uint32(c[10])*100, uint32(c[10])*10
	s.SndCwnd, ev.SndCwnd = uint32(c[10]%16), uint32(c[10]%16)
	s.RttSamples = uint32(c[11] % 16)
	s.RttHist[int(c[12])%conntrack.RTTBuckets] = uint32(c[11] % 16)
	s.RttHist[int(c[12]>>3)%conntrack.RTTBuckets] += uint32(c[11] >> 4)
	s.RttSumUs = uint64(c[11]) * 137
	s.Family = []uint16{0, 2, 10, 1}[c[13]%4]
	s.Direction = (c[13] >> 2) % 4
	s.Saddr[0], s.Saddr[15] = 10, c[14]%4
	s.Daddr[0], s.Daddr[15] = 10, c[14]>>4
	s.Sport, s.Dport = uint16(c[15]%4)*1000, uint16(c[15]>>4)*100
	s.Owner.Pid = uint32(c[14] % 3)
	s.Owner.CgroupId = uint64(c[14] % 5)
	s.Owner.Comm[0] = int8('a' + c[15]%3)
	return ev
}

type rollupSnap struct {
	opened, closed, failed, sent, received, retrans, resetsRx, resetsTx, rtt, dur uint64
}

func FuzzTableRecords(f *testing.F) {
	op := func(kind byte, b ...byte) []byte {
		o := make([]byte, opSize)
		o[0] = kind
		copy(o[1:], b)
		return o
	}
	cat := func(ops ...[]byte) []byte {
		var out []byte
		for _, o := range ops {
			out = append(out, o...)
		}
		return out
	}
	// open (flush of one entry), then its close record
	f.Add(cat(op(1, 1, 1, 1, 5, 1, 10, 0, 20, 1, 30, 3, 4, 6, 0x21, 0x12), op(0, 0, 1, 1, 5, 1, 12, 0, 22, 1, 30, 3, 4, 6, 0x21, 0x12)))
	// a close record for a connection never seen, then a sweep
	f.Add(cat(op(0, 0, 3, 2, 9, 4, 7, 1, 7, 0, 8, 2, 2, 1, 0x10, 0x31), op(2, 40)))
	// open, retired unseen by two flushes, then its late close record
	f.Add(cat(op(1, 1, 2, 3, 9, 1, 7, 1, 7, 0, 8, 2, 2, 1, 0x10, 0x31), op(1, 0), op(1, 0), op(0, 0, 2, 3, 9, 1, 9, 1, 9, 0, 8, 2, 2, 1, 0x10, 0x31), op(2, 31)))
	// an address reused with a new start, an untracked close, a failed walk
	f.Add(cat(op(1, 1, 4, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 5, 0x03, 0x22), op(1, 1, 4, 2, 1, 1, 2, 0, 2, 0, 1, 1, 1, 5, 0x03, 0x22),
		op(0, 0, 4, 0, 30, 5, 3, 0, 3, 0, 1, 1, 1, 5, 0x03, 0x22), op(3, 1, 5, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 5, 0x03, 0x22)))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64*opSize {
			return
		}
		tb, clk := newTable(conntrack.Options{Retention: 30 * time.Second, MaxSeries: 3})
		prev := map[*conntrack.Rollup]rollupSnap{}
		closes := uint64(0)
		for i := 0; i+opSize <= len(data); i += opSize {
			c := data[i : i+opSize]
			clk.set(time.Duration(i/opSize+1) * 100 * time.Millisecond)
			switch c[0] % 4 {
			case 0:
				tb.Close(recordFrom(c))
				closes++
			case 1, 3: // a flush pass over c[1]%4 entries: this one and the next ones
				n := int(c[1] % 4)
				var entries []*bpf.TcpobsConnEvent
				for k := 0; k < n && i+(k+1)*opSize <= len(data); k++ {
					entries = append(entries, recordFrom(data[i+k*opSize:]))
				}
				fail := c[0]%4 == 3
				_, _ = tb.Flush(func(observe func(uint64, *conntrack.State)) (int, error) {
					for _, e := range entries {
						observe(e.Sk, &e.State)
					}
					if fail {
						return len(entries), errors.New("walk failed")
					}
					return len(entries), nil
				})
			case 2: // time passes, then a sweep
				clk.set(time.Duration(i/opSize+1)*100*time.Millisecond + time.Duration(c[1])*time.Second)
				tb.Sweep()
			}
			checkBooks(t, tb, prev, closes, i/opSize)
		}
	})
}

func checkBooks(t *testing.T, tb *conntrack.Table, prev map[*conntrack.Rollup]rollupSnap, closes uint64, step int) {
	t.Helper()
	open, _ := tb.Len()
	var active int64
	tb.EachRollup(func(r *conntrack.Rollup) {
		active += r.Active
		if r.Active < 0 || r.Active != int64(r.Opened)-int64(r.Closed) {
			t.Fatalf("op %d: rollup %v: active %d, opened %d, closed %d", step, r.Key, r.Active, r.Opened, r.Closed)
		}
		if r.Failed > r.Closed || r.Duration.Count > r.Closed {
			t.Fatalf("op %d: rollup %v: %d failed, %d durations of %d closed", step, r.Key, r.Failed, r.Duration.Count, r.Closed)
		}
		for _, h := range []*conntrack.Histogram{&r.RTT, &r.Duration} {
			var n uint64
			for _, v := range h.Counts {
				n += v
			}
			if n != h.Count {
				t.Fatalf("op %d: rollup %v: histogram count %d, buckets sum to %d", step, r.Key, h.Count, n)
			}
		}
		now := rollupSnap{r.Opened, r.Closed, r.Failed, r.BytesSent, r.BytesReceived, r.Retransmits, r.ResetsRx, r.ResetsTx, r.RTT.Count, r.Duration.Count}
		if was, ok := prev[r]; ok {
			w := []uint64{was.opened, was.closed, was.failed, was.sent, was.received, was.retrans, was.resetsRx, was.resetsTx, was.rtt, was.dur}
			n := []uint64{now.opened, now.closed, now.failed, now.sent, now.received, now.retrans, now.resetsRx, now.resetsTx, now.rtt, now.dur}
			for k := range w {
				if n[k] < w[k] {
					t.Fatalf("op %d: rollup %v: a counter fell: %+v -> %+v", step, r.Key, was, now)
				}
			}
		}
		prev[r] = now
	})
	if active != int64(open) {
		t.Fatalf("op %d: rollups count %d active connections, the table has %d open", step, active, open)
	}
	series := 0
	tb.Each(func(*conntrack.Conn) { series++ })
	if series > 3 {
		t.Fatalf("op %d: %d connections have series, the cap is 3", step, series)
	}
	if got := tb.Counters().Closes; got != closes {
		t.Fatalf("op %d: %d closes counted, %d applied", step, got, closes)
	}
}
