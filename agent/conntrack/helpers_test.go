package conntrack_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/conntrack"
	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
)

// t0 is wall time at kernel time 0: ktime ns maps to t0+ns.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func ktime(d time.Duration) uint64 { return uint64(d) }

// clock is the injected wall clock; tests move it by hand.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time            { return c.now }
func (c *clock) set(sinceT0 time.Duration) { c.now = t0.Add(sinceT0) }
func ktimeToWall(ns uint64) time.Time      { return t0.Add(time.Duration(ns)) }
func newTable(o conntrack.Options) (*conntrack.Table, *clock) {
	c := &clock{now: t0}
	o.Now, o.KtimeToWall = c.Now, ktimeToWall
	return conntrack.New(o), c
}

// fakeResolver names workloads by cgroup id and remote pods by address.
type fakeResolver struct {
	workloads map[uint64]conntrack.Workload
	peers     map[netip.Addr][2]string // namespace, pod
}

func (r fakeResolver) Workload(cgroupID uint64, _ uint32) conntrack.Workload {
	return r.workloads[cgroupID]
}

func (r fakeResolver) Peer(ip netip.Addr) (string, string, bool) {
	p, ok := r.peers[ip]
	return p[0], p[1], ok
}

var resolver = fakeResolver{
	workloads: map[uint64]conntrack.Workload{
		77: {ContainerID: "c0ffee", PodUID: "uid-1", Pod: "web-0", Namespace: "shop"},
	},
	peers: map[netip.Addr][2]string{
		netip.MustParseAddr("10.0.0.2"): {"data", "db-0"},
	},
}

// spec describes one kernel connection; state() renders it as the kernel would.
type spec struct {
	src, dst string // ip:port; IPv6 as [addr]:port
	family   uint16 // 0: from the address (2 or 10)
	pid      uint32
	comm     string
	cgroup   uint64
	start    time.Duration // kernel open time
	dir      conntrack.Direction
	flags    uint32
}

func (s spec) state(t testing.TB) conntrack.State {
	t.Helper()
	src, dst := netip.MustParseAddrPort(s.src), netip.MustParseAddrPort(s.dst)
	var st conntrack.State
	st.Family = s.family
	if st.Family == 0 {
		st.Family = 10
		if src.Addr().Is4() {
			st.Family = 2
		}
	}
	put := func(dst *[16]uint8, a netip.Addr) {
		if st.Family == 2 {
			b := a.As4()
			copy(dst[:], b[:])
		} else {
			*dst = a.As16()
		}
	}
	put(&st.Saddr, src.Addr())
	put(&st.Daddr, dst.Addr())
	st.Sport, st.Dport = src.Port(), dst.Port()
	st.StartNs = ktime(s.start)
	st.Owner.Pid, st.Owner.CgroupId = s.pid, s.cgroup
	for i := 0; i < len(s.comm) && i < 16; i++ {
		st.Owner.Comm[i] = int8(s.comm[i])
	}
	st.Direction = uint8(s.dir)
	st.Flags = s.flags
	return st
}

// closeRec is a close record with exact totals.
type closeRec struct {
	sk             uint64
	end            time.Duration
	sent, received uint64
	retrans        uint32
	srttUs, rttvar uint32
	cwnd           uint32
	extraFlags     uint32
	rttHist        map[int]uint32
	rttSumUs       uint64
	rttSamples     uint32
}

func (r closeRec) event(st conntrack.State) *bpf.TcpobsConnEvent {
	ev := &bpf.TcpobsConnEvent{Sk: r.sk, EndNs: ktime(r.end), BytesSent: r.sent, BytesReceived: r.received,
		TotalRetrans: r.retrans, SrttUs: r.srttUs, RttvarUs: r.rttvar, SndCwnd: r.cwnd, State: st}
	ev.State.Flags |= r.extraFlags
	for b, n := range r.rttHist {
		ev.State.RttHist[b] = n
	}
	ev.State.RttSamples, ev.State.RttSumUs = r.rttSamples, r.rttSumUs
	return ev
}

// conns returns the connections that have series, in Each order.
func conns(tb *conntrack.Table) []conntrack.Conn {
	var out []conntrack.Conn
	tb.Each(func(c *conntrack.Conn) { out = append(out, *c) })
	return out
}

// rollups returns copies of every rollup, by key.
func rollups(tb *conntrack.Table) map[conntrack.RollupKey]conntrack.Rollup {
	out := map[conntrack.RollupKey]conntrack.Rollup{}
	tb.EachRollup(func(r *conntrack.Rollup) {
		cp := *r
		cp.RTT.Counts = append([]uint64(nil), r.RTT.Counts...)
		cp.Duration.Counts = append([]uint64(nil), r.Duration.Counts...)
		out[r.Key] = cp
	})
	return out
}

// onlyRollup returns the single rollup of tb.
func onlyRollup(t *testing.T, tb *conntrack.Table) conntrack.Rollup {
	t.Helper()
	rs := rollups(tb)
	if len(rs) != 1 {
		t.Fatalf("want 1 rollup, got %d: %+v", len(rs), rs)
	}
	for _, r := range rs {
		return r
	}
	panic("unreachable")
}

// observe runs one flush pass over the given kernel entries.
func observe(tb *conntrack.Table, entries map[uint64]conntrack.State) {
	_, _ = tb.Flush(entriesWalk(entries))
}

// entriesWalk reads the given kernel entries, as reader.ConnMap.Each reads
// the kernel's map.
func entriesWalk(entries map[uint64]conntrack.State) conntrack.Walk {
	return func(observe func(uint64, *conntrack.State)) (int, error) {
		for sk, st := range entries {
			observe(sk, &st)
		}
		return len(entries), nil
	}
}
