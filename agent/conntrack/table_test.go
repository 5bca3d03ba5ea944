package conntrack_test

import (
	"errors"
	"math"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/conntrack"
	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
)

const est = conntrack.FlagEstablished

// curl is an established client connection opened at kernel time 1s.
var curl = spec{src: "10.0.0.1:40000", dst: "10.0.0.2:80", pid: 10, comm: "curl",
	start: time.Second, dir: conntrack.DirActive, flags: est}

func TestCloseOfUnseenConnectionCreatesIt(t *testing.T) {
	cases := []struct {
		name       string
		sp         spec
		wantLabels []string
	}{
		{"ipv4", spec{src: "10.0.0.1:40000", dst: "10.0.0.2:5432", pid: 4242, comm: "psql", cgroup: 77,
			start: time.Second, dir: conntrack.DirActive, flags: est},
			[]string{"10.0.0.1", "40000", "10.0.0.2", "5432", "4242", "psql", "c0ffee", "web-0", "shop"}},
		{"ipv6", spec{src: "[fd00::1]:40001", dst: "[fd00::2]:443", pid: 7, comm: "fifteen-chars-x", // 15 bytes + NUL, the kernel's longest
			start: time.Second, dir: conntrack.DirActive, flags: est},
			[]string{"fd00::1", "40001", "fd00::2", "443", "7", "fifteen-chars-x", "", "", ""}},
		{"v4-mapped ipv6 is unmapped", spec{src: "[::ffff:10.0.0.1]:40002", dst: "[::ffff:10.0.0.2]:80", pid: 1, comm: "curl",
			start: time.Second, dir: conntrack.DirActive, flags: est},
			[]string{"10.0.0.1", "40002", "10.0.0.2", "80", "1", "curl", "", "", ""}},
		{"full 16-byte comm", spec{src: "10.0.0.1:1", dst: "10.0.0.3:2", pid: 9, comm: "abcdefghijklmnop",
			start: time.Second, dir: conntrack.DirActive, flags: est},
			[]string{"10.0.0.1", "1", "10.0.0.3", "2", "9", "abcdefghijklmnop", "", "", ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb, _ := newTable(conntrack.Options{MaxSeries: 10, Resolver: resolver})
			st := tc.sp.state(t)
			tb.Close(closeRec{sk: 0xffff1, end: 3500 * time.Millisecond, sent: 1000, received: 2000,
				retrans: 3, srttUs: 1500, rttvar: 200, cwnd: 10}.event(st))

			cs := conns(tb)
			if len(cs) != 1 {
				t.Fatalf("want 1 connection, got %d", len(cs))
			}
			c := cs[0]
			if !slices.Equal(c.Labels(), tc.wantLabels) {
				t.Errorf("labels\n got %q\nwant %q", c.Labels(), tc.wantLabels)
			}
			if len(conntrack.ConnLabelNames) != len(c.Labels()) {
				t.Errorf("%d label values for %d names", len(c.Labels()), len(conntrack.ConnLabelNames))
			}
			src, dst := netip.MustParseAddrPort(tc.sp.src), netip.MustParseAddrPort(tc.sp.dst)
			if c.SrcIP.Unmap() != src.Addr().Unmap() || c.DstIP.Unmap() != dst.Addr().Unmap() || c.SrcPort != src.Port() || c.DstPort != dst.Port() {
				t.Errorf("endpoints %v:%d -> %v:%d, want %v -> %v", c.SrcIP, c.SrcPort, c.DstIP, c.DstPort, src, dst)
			}
			if c.BytesSent != 1000 || c.BytesReceived != 2000 || c.Retransmits != 3 {
				t.Errorf("totals sent=%d received=%d retrans=%d, want 1000 2000 3", c.BytesSent, c.BytesReceived, c.Retransmits)
			}
			if c.SRTT != 1500*time.Microsecond || c.RTTVar != 200*time.Microsecond || c.Cwnd != 10 {
				t.Errorf("srtt=%v rttvar=%v cwnd=%d", c.SRTT, c.RTTVar, c.Cwnd)
			}
			if c.Open() || !c.Closed.Equal(t0.Add(3500*time.Millisecond)) || !c.Opened.Equal(t0.Add(time.Second)) {
				t.Errorf("opened %v closed %v, want t0+1s and t0+3.5s", c.Opened, c.Closed)
			}
			if c.Direction != conntrack.DirActive {
				t.Errorf("direction %v", c.Direction)
			}
			if open, closed := tb.Len(); open != 0 || closed != 1 {
				t.Errorf("Len() = %d open, %d closed; want 0, 1", open, closed)
			}
			r := onlyRollup(t, tb)
			if r.Opened != 1 || r.Closed != 1 || r.Active != 0 || r.BytesSent != 1000 || r.BytesReceived != 2000 || r.Retransmits != 3 {
				t.Errorf("rollup %+v", r)
			}
			if got := tb.Counters().Closes; got != 1 {
				t.Errorf("Counters().Closes = %d", got)
			}
		})
	}
}

func TestWorkloadAndPeerLabels(t *testing.T) {
	tb, _ := newTable(conntrack.Options{MaxSeries: 10, Resolver: resolver})
	st := spec{src: "10.0.0.1:40000", dst: "10.0.0.2:5432", pid: 4242, comm: "psql", cgroup: 77,
		start: time.Second, dir: conntrack.DirActive, flags: est}.state(t)
	tb.Close(closeRec{sk: 1, end: 2 * time.Second}.event(st))
	r := onlyRollup(t, tb)
	want := conntrack.RollupKey{Process: "psql", ContainerID: "c0ffee", Pod: "web-0", Namespace: "shop",
		RemoteIP: netip.MustParseAddr("10.0.0.2"), ServicePort: 5432, Direction: conntrack.DirActive, RemotePod: "db-0", RemoteNamespace: "data"}
	if r.Key != want {
		t.Errorf("rollup key\n got %+v\nwant %+v", r.Key, want)
	}
	wantValues := []string{"psql", "c0ffee", "web-0", "shop", "10.0.0.2", "5432", "active", "db-0", "data"}
	if !slices.Equal(r.Values(), wantValues) || !slices.Equal(r.Key.Values(), wantValues) {
		t.Errorf("rollup values %q, want %q", r.Values(), wantValues)
	}
	if len(conntrack.RollupLabelNames) != len(wantValues) {
		t.Errorf("%d rollup label names", len(conntrack.RollupLabelNames))
	}
	if c := conns(tb)[0]; c.Workload.PodUID != "uid-1" || c.CgroupID != 77 {
		t.Errorf("workload %+v cgroup %d", c.Workload, c.CgroupID)
	}
}

func TestOpenThenClosedKeepsOneSeries(t *testing.T) {
	tb, _ := newTable(conntrack.Options{MaxSeries: 10})
	st := curl.state(t)
	live := st
	live.AckedBase, live.Sent, live.BytesReceived = 1, 501, 300 // the SYN counts in bytes_acked
	live.Retransmits, live.SrttUs, live.SndCwnd = 2, 900, 12
	observe(tb, map[uint64]conntrack.State{0xa: live})

	cs := conns(tb)
	if len(cs) != 1 || !cs[0].Open() {
		t.Fatalf("after a flush: %d connections (open=%v), want 1 open", len(cs), len(cs) == 1 && cs[0].Open())
	}
	if c := cs[0]; c.BytesSent != 500 || c.BytesReceived != 300 || c.Retransmits != 2 || c.SRTT != 900*time.Microsecond || c.Cwnd != 12 {
		t.Errorf("live figures %+v", c)
	}
	if open, closed := tb.Len(); open != 1 || closed != 0 {
		t.Errorf("Len() = %d, %d; want 1, 0", open, closed)
	}

	tb.Close(closeRec{sk: 0xa, end: 4 * time.Second, sent: 800, received: 700, retrans: 4, srttUs: 1000}.event(st))
	cs = conns(tb)
	if len(cs) != 1 {
		t.Fatalf("after close: %d connections, want 1 (the open one completed)", len(cs))
	}
	if c := cs[0]; c.Open() || c.BytesSent != 800 || c.BytesReceived != 700 || c.Retransmits != 4 || c.SRTT != time.Millisecond {
		t.Errorf("closed figures sent=%d received=%d retrans=%d srtt=%v open=%v", c.BytesSent, c.BytesReceived, c.Retransmits, c.SRTT, c.Open())
	}
	if open, closed := tb.Len(); open != 0 || closed != 1 {
		t.Errorf("Len() = %d, %d; want 0, 1", open, closed)
	}
	r := onlyRollup(t, tb)
	if r.Opened != 1 || r.Closed != 1 || r.Active != 0 || r.BytesSent != 800 || r.BytesReceived != 700 || r.Retransmits != 4 {
		t.Errorf("rollup opened=%d closed=%d active=%d sent=%d received=%d retrans=%d",
			r.Opened, r.Closed, r.Active, r.BytesSent, r.BytesReceived, r.Retransmits)
	}
}

func TestClosedStayVisibleForRetention(t *testing.T) {
	tb, clk := newTable(conntrack.Options{MaxSeries: 1, Retention: 30 * time.Second})
	st := curl.state(t)
	tb.Close(closeRec{sk: 1, end: 10 * time.Second, sent: 5}.event(st))

	clk.set(39 * time.Second) // 29s after the close
	tb.Sweep()
	if n := len(conns(tb)); n != 1 {
		t.Fatalf("29s after close: %d connections, want 1", n)
	}
	clk.set(41 * time.Second) // 31s after
	tb.Sweep()
	if n := len(conns(tb)); n != 0 {
		t.Fatalf("31s after close: %d connections, want 0", n)
	}
	if open, closed := tb.Len(); open != 0 || closed != 0 {
		t.Errorf("Len() = %d, %d after sweep", open, closed)
	}
	if got := tb.Counters().Evicted; got != 1 {
		t.Errorf("Evicted = %d, want 1", got)
	}
	// The totals live on in the rollup, and the series slot is free again
	// (MaxSeries is 1).
	if r := onlyRollup(t, tb); r.BytesSent != 5 || r.Closed != 1 {
		t.Errorf("rollup after sweep: %+v", r)
	}
	st2 := st
	st2.StartNs = ktime(50 * time.Second)
	tb.Close(closeRec{sk: 2, end: 51 * time.Second}.event(st2))
	if n := len(conns(tb)); n != 1 {
		t.Errorf("a new connection after the sweep has no series: the freed slot was not returned")
	}
}

func TestSocketAddressReuse(t *testing.T) {
	sp := spec{src: "10.0.0.1:40000", dst: "10.0.0.2:80", pid: 10, comm: "curl", dir: conntrack.DirActive, flags: est}

	t.Run("two close records", func(t *testing.T) {
		tb, _ := newTable(conntrack.Options{MaxSeries: 10})
		a, b := sp, sp
		a.start, b.start = time.Second, 5*time.Second
		tb.Close(closeRec{sk: 0xa, end: 2 * time.Second, sent: 1}.event(a.state(t)))
		tb.Close(closeRec{sk: 0xa, end: 6 * time.Second, sent: 2}.event(b.state(t)))
		cs := conns(tb)
		if len(cs) != 2 {
			t.Fatalf("%d connections, want 2", len(cs))
		}
		if cs[0].BytesSent == cs[1].BytesSent || cs[0].Opened.Equal(cs[1].Opened) {
			t.Errorf("the two connections are not distinct: %+v / %+v", cs[0], cs[1])
		}
		if r := onlyRollup(t, tb); r.Opened != 2 || r.Closed != 2 || r.BytesSent != 3 {
			t.Errorf("rollup opened=%d closed=%d sent=%d", r.Opened, r.Closed, r.BytesSent)
		}
	})

	// A socket the kernel had no entry for (an accepted child dropped in
	// SYN_RECV, or one evicted from an LRU map) closes with an untracked
	// record; its memory is reused by a new connection that a flush sees
	// before the reader, lagging behind the ring buffer, applies the
	// record. The record must not close the newer connection.
	t.Run("untracked close of an older socket", func(t *testing.T) {
		tb, _ := newTable(conntrack.Options{MaxSeries: 10})
		b := sp
		b.start = 5 * time.Second
		observe(tb, map[uint64]conntrack.State{0xa: b.state(t)})
		child := spec{src: "10.0.0.1:80", dst: "10.0.0.9:51000"}.state(t)
		child.Flags = conntrack.FlagUntracked
		child.StartNs = 0
		tb.Close(closeRec{sk: 0xa, end: 4 * time.Second}.event(child))
		var cur *conntrack.Conn
		for _, c := range conns(tb) {
			if c.Open() {
				cur = &c
			}
		}
		if cur == nil || !cur.Opened.Equal(t0.Add(5*time.Second)) {
			t.Fatalf("the newer connection was closed by an older socket's untracked record: %+v", conns(tb))
		}
		// Its own record later closes it once, not a second copy.
		tb.Close(closeRec{sk: 0xa, end: 7 * time.Second, sent: 5}.event(b.state(t)))
		for _, r := range rollups(tb) {
			if r.Key.Direction == conntrack.DirActive && (r.Opened != 1 || r.Closed != 1 || r.BytesSent != 5) {
				t.Errorf("active rollup opened=%d closed=%d sent=%d, want 1, 1, 5", r.Opened, r.Closed, r.BytesSent)
			}
		}
	})

	// An entry the kernel lost (LRU eviction) after a flush saw it: its
	// untracked close record completes the open connection.
	t.Run("untracked close of a connection seen open", func(t *testing.T) {
		tb, _ := newTable(conntrack.Options{MaxSeries: 10})
		a := sp
		a.start = time.Second
		observe(tb, map[uint64]conntrack.State{0xa: a.state(t)})
		rec := a.state(t)
		rec.Flags, rec.StartNs = conntrack.FlagUntracked, 0
		tb.Close(closeRec{sk: 0xa, end: 3 * time.Second, sent: 9}.event(rec))
		if open, _ := tb.Len(); open != 0 {
			t.Fatalf("%d open after its untracked close", open)
		}
		if r := onlyRollup(t, tb); r.Opened != 1 || r.Closed != 1 || r.BytesSent != 9 {
			t.Errorf("rollup opened=%d closed=%d sent=%d", r.Opened, r.Closed, r.BytesSent)
		}
	})

	t.Run("reused while open, old close record late", func(t *testing.T) {
		tb, _ := newTable(conntrack.Options{MaxSeries: 10})
		a, b := sp, sp
		a.start, b.start = time.Second, 5*time.Second
		observe(tb, map[uint64]conntrack.State{0xa: a.state(t)})
		observe(tb, map[uint64]conntrack.State{0xa: b.state(t)}) // same sk, new start: the old one closed
		if open, closed := tb.Len(); open != 1 || closed != 1 {
			t.Fatalf("Len() = %d, %d; want 1 open (new), 1 closed (old)", open, closed)
		}
		tb.Close(closeRec{sk: 0xa, end: 4 * time.Second, sent: 77}.event(a.state(t)))
		if open, closed := tb.Len(); open != 1 || closed != 1 {
			t.Fatalf("after the old close record: Len() = %d, %d; want 1, 1", open, closed)
		}
		var old, cur *conntrack.Conn
		for _, c := range conns(tb) {
			if c.Open() {
				cur = &c
			} else {
				old = &c
			}
		}
		if old == nil || cur == nil || old.BytesSent != 77 || !old.Opened.Equal(t0.Add(time.Second)) || !cur.Opened.Equal(t0.Add(5*time.Second)) {
			t.Errorf("old %+v\nnew %+v", old, cur)
		}
		if r := onlyRollup(t, tb); r.Opened != 2 || r.Closed != 1 || r.Active != 1 || r.BytesSent != 77 {
			t.Errorf("rollup opened=%d closed=%d active=%d sent=%d", r.Opened, r.Closed, r.Active, r.BytesSent)
		}
	})
}

// A close record that arrives while the kernel map is being read waits for
// the flush to end, so a snapshot entry can never resurrect a connection
// whose record was already applied (the kernel deletes an entry before it
// emits the record).
func TestCloseWaitsForFlush(t *testing.T) {
	tb, _ := newTable(conntrack.Options{MaxSeries: 10})
	st := curl.state(t)
	done := make(chan struct{})
	_, _ = tb.Flush(func(observe func(uint64, *conntrack.State)) (int, error) {
		go func() {
			tb.Close(closeRec{sk: 0xa, end: 2 * time.Second, sent: 10}.event(st))
			close(done)
		}()
		select {
		case <-done:
			t.Error("close record applied in the middle of a flush")
		case <-time.After(50 * time.Millisecond):
		}
		live := st
		live.Sent = 5 // read by the batch before the socket closed
		observe(0xa, &live)
		return 1, nil
	})
	<-done
	if open, closed := tb.Len(); open != 0 || closed != 1 {
		t.Fatalf("Len() = %d, %d; want 0 open, 1 closed", open, closed)
	}
	if cs := conns(tb); len(cs) != 1 || cs[0].BytesSent != 10 {
		t.Errorf("connections %+v", cs)
	}
	if r := onlyRollup(t, tb); r.Opened != 1 || r.Active != 0 || r.BytesSent != 10 {
		t.Errorf("rollup opened=%d active=%d sent=%d", r.Opened, r.Active, r.BytesSent)
	}
}

func TestOpenMissingFromTwoFlushesIsRetired(t *testing.T) {
	tb, clk := newTable(conntrack.Options{MaxSeries: 10})
	st := curl.state(t)
	st.AckedBase, st.Sent = 1, 43
	observe(tb, map[uint64]conntrack.State{0xa: st})
	clk.set(2 * time.Second)
	observe(tb, nil)
	if open, _ := tb.Len(); open != 1 || tb.Counters().LostOpen != 0 {
		t.Fatalf("absent from one flush: open=%d lost=%d, want still open", open, tb.Counters().LostOpen)
	}
	clk.set(3 * time.Second)
	observe(tb, nil)
	if open, closed := tb.Len(); open != 0 || closed != 1 {
		t.Fatalf("absent from two flushes: Len() = %d, %d; want 0, 1", open, closed)
	}
	if c := tb.Counters(); c.LostOpen != 1 || c.Snapshots != 3 {
		t.Errorf("counters %+v, want LostOpen 1, Snapshots 3", c)
	}
	cs := conns(tb)
	if len(cs) != 1 || !cs[0].Closed.Equal(t0.Add(3*time.Second)) || cs[0].BytesSent != 42 {
		t.Errorf("retired connection %+v, want closed at t0+3s with 42 bytes sent", cs)
	}
	if r := onlyRollup(t, tb); r.Active != 0 || r.Closed != 1 || r.BytesSent != 42 || r.Duration.Count != 1 || r.Duration.Sum != 2 {
		t.Errorf("rollup active=%d closed=%d sent=%d duration count=%d sum=%v", r.Active, r.Closed, r.BytesSent, r.Duration.Count, r.Duration.Sum)
	}
}

// A walk of the kernel map that fails part-way (or panics) leaves the table
// unlocked: close records, scrapes and the next flush all go on. Before,
// Flush was BeginFlush, the walk, EndFlush, and the observer skipped
// EndFlush on an error, so the lock was never released. Each step runs under
// a timeout: a deadlock fails the test instead of hanging it.
func TestFailedWalkReleasesTheLock(t *testing.T) {
	tb, _ := newTable(conntrack.Options{MaxSeries: 10})
	st := curl.state(t)
	walkErr := errors.New("read connection map: injected")
	within(t, "a failing walk", func() {
		n, err := tb.Flush(func(observe func(uint64, *conntrack.State)) (int, error) {
			observe(0xa, &st) // part-way
			return 1, walkErr
		})
		if n != 1 || !errors.Is(err, walkErr) {
			t.Errorf("Flush = %d, %v; want 1, the walk's error", n, err)
		}
	})
	within(t, "a panicking walk", func() {
		defer func() { _ = recover() }()
		_, _ = tb.Flush(func(func(uint64, *conntrack.State)) (int, error) { panic("walk") })
	})
	within(t, "a close record after the failed walks", func() {
		tb.Close(closeRec{sk: 0xa, end: 2 * time.Second, sent: 10}.event(st))
	})
	within(t, "a scrape", func() {
		if cs := conns(tb); len(cs) != 1 || cs[0].BytesSent != 10 {
			t.Errorf("connections %+v, want the closed one with 10 bytes", cs)
		}
		_ = rollups(tb)
		_ = tb.Counters()
	})
	within(t, "the next flush", func() {
		if _, err := tb.Flush(entriesWalk(nil)); err != nil {
			t.Errorf("next flush: %v", err)
		}
	})
	if c := tb.Counters(); c.Snapshots != 3 || c.Closes != 1 {
		t.Errorf("counters %+v, want 3 snapshots, 1 close", c)
	}
}

// within runs f, failing the test if it does not return in time (a
// deadlock); the blocked goroutine is left behind.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s blocked: the table's lock is still held", what)
	}
}

// A failed walk proves nothing about the entries it did not reach: it
// retires nothing, and a connection it missed gets the same two complete
// flushes as any other before it counts as lost.
func TestFailedWalkRetiresNothing(t *testing.T) {
	tb, _ := newTable(conntrack.Options{MaxSeries: 10})
	a, b := curl.state(t), curl.state(t)
	b.Sport, b.StartNs = 40001, ktime(2*time.Second)
	observe(tb, map[uint64]conntrack.State{0xa: a, 0xb: b})
	failing := func(observe func(uint64, *conntrack.State)) (int, error) {
		observe(0xb, &b) // 0xa not reached
		return 1, errors.New("injected")
	}
	within(t, "failed walks and the complete ones after them", func() {
		for range 3 {
			if _, err := tb.Flush(failing); err == nil {
				t.Error("failing walk reported no error")
			}
		}
		if open, _ := tb.Len(); open != 2 || tb.Counters().LostOpen != 0 {
			t.Errorf("after failed walks: open=%d lost=%d, want 2 open, none lost", open, tb.Counters().LostOpen)
		}
		only := map[uint64]conntrack.State{0xb: b}
		observe(tb, only) // 0xa missing from one complete flush: still open
		if open, _ := tb.Len(); open != 2 {
			t.Errorf("missing from one complete flush: %d open, want 2", open)
		}
		observe(tb, only)
		if open, _ := tb.Len(); open != 1 || tb.Counters().LostOpen != 1 {
			t.Errorf("missing from two complete flushes: open=%d lost=%d, want 1, 1", open, tb.Counters().LostOpen)
		}
	})
}

func TestSeriesCap(t *testing.T) {
	tb, _ := newTable(conntrack.Options{MaxSeries: 2})
	base := spec{dst: "10.0.0.2:80", pid: 10, comm: "curl", start: time.Second, dir: conntrack.DirActive, flags: est}
	for i := range 5 {
		sp := base
		sp.src = netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(40000+i)).String()
		tb.Close(closeRec{sk: uint64(i + 1), end: 2 * time.Second, sent: 100}.event(sp.state(t)))
	}
	if n := len(conns(tb)); n != 2 {
		t.Errorf("%d connections with series, want 2 (the cap)", n)
	}
	// Over the cap a closed connection lives on in its rollup only: the
	// table keeps nothing of it, so churn past the cap costs no memory.
	if _, closed := tb.Len(); closed != 2 {
		t.Errorf("%d closed connections kept, want 2 (those with series)", closed)
	}
	if got := tb.Counters().SeriesOverflow; got != 3 {
		t.Errorf("SeriesOverflow = %d, want 3", got)
	}
	if r := onlyRollup(t, tb); r.Opened != 5 || r.Closed != 5 || r.BytesSent != 500 {
		t.Errorf("rollup opened=%d closed=%d sent=%d; connections over the cap must still count", r.Opened, r.Closed, r.BytesSent)
	}
}

func TestRollupNeverShrinks(t *testing.T) {
	tb, _ := newTable(conntrack.Options{MaxSeries: 10})
	st := curl.state(t)
	live := st
	live.AckedBase, live.Sent, live.BytesReceived = 0, 1000, 900
	live.Retransmits, live.TotalRetrans = 5, 5
	live.RttSamples, live.RttSumUs, live.RttHist[3] = 10, 80, 10
	observe(tb, map[uint64]conntrack.State{1: live})
	r := onlyRollup(t, tb)
	if r.BytesSent != 1000 || r.BytesReceived != 900 || r.Retransmits != 5 || r.RTT.Count != 10 {
		t.Fatalf("live rollup sent=%d received=%d retrans=%d rtt=%d", r.BytesSent, r.BytesReceived, r.Retransmits, r.RTT.Count)
	}
	// Exact figures at close are smaller (the live ones counted a FIN) or equal.
	tb.Close(closeRec{sk: 1, end: 2 * time.Second, sent: 999, received: 900, retrans: 4,
		rttSamples: 10, rttSumUs: 80, rttHist: map[int]uint32{3: 10}}.event(st))
	r = onlyRollup(t, tb)
	if r.BytesSent != 1000 || r.BytesReceived != 900 || r.Retransmits != 5 || r.RTT.Count != 10 || r.RTT.Counts[3] != 10 {
		t.Errorf("rollup went down or double-counted: sent=%d received=%d retrans=%d rtt=%d/%d",
			r.BytesSent, r.BytesReceived, r.Retransmits, r.RTT.Count, r.RTT.Counts[3])
	}
	if c := conns(tb)[0]; c.BytesSent != 999 {
		t.Errorf("the connection itself shows the exact %d, want 999", c.BytesSent)
	}

	// A larger final figure adds only the difference.
	st2 := st
	st2.StartNs = ktime(3 * time.Second)
	live2 := st2
	live2.Sent = 100
	observe(tb, map[uint64]conntrack.State{2: live2})
	tb.Close(closeRec{sk: 2, end: 4 * time.Second, sent: 150}.event(st2))
	if r := onlyRollup(t, tb); r.BytesSent != 1150 {
		t.Errorf("rollup sent=%d, want 1000+150", r.BytesSent)
	}
}

func TestPassiveServicePortIsLocalPort(t *testing.T) {
	tb, _ := newTable(conntrack.Options{MaxSeries: 10})
	// This host accepted: its own address is src, the client is dst.
	passive := spec{src: "10.0.0.5:8080", dst: "10.0.0.9:51000", pid: 3, comm: "nginx",
		start: time.Second, dir: conntrack.DirPassive, flags: est}
	active := spec{src: "10.0.0.5:42000", dst: "10.0.0.9:6379", pid: 3, comm: "nginx",
		start: time.Second, dir: conntrack.DirActive, flags: est}
	tb.Close(closeRec{sk: 1, end: 2 * time.Second}.event(passive.state(t)))
	tb.Close(closeRec{sk: 2, end: 2 * time.Second}.event(active.state(t)))
	rs := rollups(tb)
	want := map[conntrack.RollupKey]bool{
		{Process: "nginx", RemoteIP: netip.MustParseAddr("10.0.0.9"), ServicePort: 8080, Direction: conntrack.DirPassive}: true,
		{Process: "nginx", RemoteIP: netip.MustParseAddr("10.0.0.9"), ServicePort: 6379, Direction: conntrack.DirActive}:  true,
	}
	if len(rs) != len(want) {
		t.Fatalf("%d rollups, want %d: %v", len(rs), len(want), rs)
	}
	for k := range rs {
		if !want[k] {
			t.Errorf("unexpected rollup key %+v", k)
		}
	}
	// A second passive connection from another client port joins the same rollup.
	passive.dst = "10.0.0.9:51001"
	tb.Close(closeRec{sk: 3, end: 2 * time.Second}.event(passive.state(t)))
	if n := len(rollups(tb)); n != 2 {
		t.Errorf("%d rollups after a second client port, want 2", n)
	}
	for _, r := range rollups(tb) {
		if r.Key.Direction == conntrack.DirPassive && (r.Opened != 2 || r.Values()[5] != "8080" || r.Values()[6] != "passive") {
			t.Errorf("passive rollup opened=%d values=%q", r.Opened, r.Values())
		}
	}
}

func TestConnectFailedAndResets(t *testing.T) {
	tb, _ := newTable(conntrack.Options{MaxSeries: 10})
	failed := spec{src: "10.0.0.1:40000", dst: "10.0.0.2:81", pid: 10, comm: "curl",
		start: time.Second, dir: conntrack.DirActive, flags: conntrack.FlagConnectFailed}
	tb.Close(closeRec{sk: 1, end: 2 * time.Second}.event(failed.state(t)))
	r := onlyRollup(t, tb)
	if r.Failed != 1 || r.Closed != 1 || r.Opened != 1 {
		t.Errorf("failed=%d closed=%d opened=%d, want 1 1 1", r.Failed, r.Closed, r.Opened)
	}
	if r.Duration.Count != 0 {
		t.Errorf("a failed connect observed a duration (count %d)", r.Duration.Count)
	}

	tb2, _ := newTable(conntrack.Options{MaxSeries: 10})
	reset := spec{src: "10.0.0.1:40001", dst: "10.0.0.2:80", pid: 10, comm: "curl",
		start: time.Second, dir: conntrack.DirActive, flags: est | conntrack.FlagResetRx}
	st := reset.state(t)
	observe(tb2, map[uint64]conntrack.State{1: st})                                               // reset seen live...
	observe(tb2, map[uint64]conntrack.State{1: st})                                               // ...twice...
	tb2.Close(closeRec{sk: 1, end: 2 * time.Second, extraFlags: conntrack.FlagResetTx}.event(st)) // ...and at close, with a sent reset too
	r = onlyRollup(t, tb2)
	if r.ResetsRx != 1 || r.ResetsTx != 1 || r.Failed != 0 {
		t.Errorf("resets rx=%d tx=%d failed=%d, want 1 1 0", r.ResetsRx, r.ResetsTx, r.Failed)
	}
}

func TestRTTHistogramBuckets(t *testing.T) {
	if len(conntrack.RTTBounds) != conntrack.RTTBuckets-1 {
		t.Fatalf("%d RTT bounds for %d buckets (the last is +Inf)", len(conntrack.RTTBounds), conntrack.RTTBuckets)
	}
	for b, ub := range conntrack.RTTBounds {
		if want := math.Ldexp(1, b) * 1e-6; ub != want {
			t.Errorf("bound %d = %g, want 2^%d us = %g", b, ub, b, want)
		}
	}
	tb, _ := newTable(conntrack.Options{MaxSeries: 10})
	st := curl.state(t)
	last := conntrack.RTTBuckets - 1
	tb.Close(closeRec{sk: 1, end: 3500 * time.Millisecond,
		rttHist: map[int]uint32{0: 2, 3: 5, 10: 1, last: 1}, rttSamples: 9, rttSumUs: 12345}.event(st))
	r := onlyRollup(t, tb)
	if r.RTT.Count != 9 || math.Abs(r.RTT.Sum-0.012345) > 1e-12 {
		t.Errorf("RTT count=%d sum=%v, want 9 and 0.012345", r.RTT.Count, r.RTT.Sum)
	}
	cum := r.RTT.Cumulative()
	want := map[float64]uint64{1e-6: 2, 2e-6: 2, 4e-6: 2, 8e-6: 7, 512e-6: 7, 1024e-6: 8, conntrack.RTTBounds[last-1]: 8}
	for ub, n := range want {
		if cum[ub] != n {
			t.Errorf("cumulative count at le=%g: %d, want %d", ub, cum[ub], n)
		}
	}
	if len(cum) != len(conntrack.RTTBounds) {
		t.Errorf("%d cumulative buckets, want %d", len(cum), len(conntrack.RTTBounds))
	}
	// The open-ended kernel bucket is only in the +Inf count (Count).
	if r.RTT.Counts[last] != 1 {
		t.Errorf("+Inf bucket %d, want 1", r.RTT.Counts[last])
	}

	// Duration: close - open = 2.5s, in the le=5 bucket.
	if r.Duration.Count != 1 || r.Duration.Sum != 2.5 {
		t.Errorf("duration count=%d sum=%v, want 1, 2.5", r.Duration.Count, r.Duration.Sum)
	}
	dc := r.Duration.Cumulative()
	if dc[1] != 0 || dc[5] != 1 {
		t.Errorf("duration le=1: %d, le=5: %d; want 0, 1", dc[1], dc[5])
	}
}

func TestHistogramObserveBoundaryIsInclusive(t *testing.T) {
	h := conntrack.Histogram{Bounds: []float64{1, 2}, Counts: make([]uint64, 3)}
	for _, v := range []float64{0.5, 1, 1.5, 2, 3} {
		h.Observe(v)
	}
	if !slices.Equal(h.Counts, []uint64{2, 2, 1}) || h.Count != 5 || h.Sum != 8 {
		t.Errorf("counts %v count %d sum %v, want [2 2 1] 5 8 (le semantics)", h.Counts, h.Count, h.Sum)
	}
}

// With a per-CPU map and no cross-CPU lookup the close record carries only
// the closing CPU's share (FlagPartial). The flushes already showed that
// share, merged with the others' shares; adding the final share on top
// counts the part seen at the last flush twice.
func TestPartialCloseDoesNotDoubleCount(t *testing.T) {
	tb, _ := newTable(conntrack.Options{MaxSeries: 10})
	st := curl.state(t)
	live := st // a connection that only ever ran on one CPU: merged == that CPU's share
	live.RttSamples, live.RttSumUs, live.RttHist[2] = 2, 6, 2
	observe(tb, map[uint64]conntrack.State{1: live})
	final := st // the same CPU's share at close: one more sample
	final.Flags |= conntrack.FlagPartial
	final.RttSamples, final.RttSumUs, final.RttHist[2] = 3, 9, 3
	tb.Close(&bpf.TcpobsConnEvent{Sk: 1, EndNs: ktime(2 * time.Second), State: final})

	c := conns(tb)[0]
	r := onlyRollup(t, tb)
	if c.RTTSamples < 3 {
		t.Fatalf("connection lost samples: %d, want at least the final share's 3", c.RTTSamples)
	}
	if c.RTTSamples != 3 || r.RTT.Count != 3 {
		t.Fatalf("partial close double-counted the closing CPU's share: "+
			"connection %d samples, rollup %d; only 3 were ever taken", c.RTTSamples, r.RTT.Count)
	}
}

// A state whose sample counter and buckets disagree (a per-CPU slot read
// mid-update) still gives a histogram whose count is its buckets' sum.
func TestRTTCountIsBucketSum(t *testing.T) {
	tb, _ := newTable(conntrack.Options{MaxSeries: 10})
	sp := spec{src: "10.0.0.1:40000", dst: "10.0.0.2:80", pid: 10, comm: "curl", dir: conntrack.DirActive, flags: est, start: time.Second}
	st := sp.state(t)
	st.RttSamples, st.RttHist[3], st.RttHist[5] = 2, 2, 1
	observe(tb, map[uint64]conntrack.State{0xa: st})
	r := onlyRollup(t, tb)
	var sum uint64
	for _, n := range r.RTT.Counts {
		sum += n
	}
	if r.RTT.Count != 3 || sum != 3 {
		t.Errorf("count %d, buckets sum %d; want 3 and 3", r.RTT.Count, sum)
	}
}

// TestResolverAskedAgainEachFlush: consecutive connections of one owner and
// peer reuse the resolver's answers within a flush interval, and a pod that
// appears (or an owner that moves) is seen from the next flush on.
func TestResolverAskedAgainEachFlush(t *testing.T) {
	r := fakeResolver{workloads: map[uint64]conntrack.Workload{}, peers: map[netip.Addr][2]string{}}
	tb, _ := newTable(conntrack.Options{MaxSeries: 10, Resolver: r})
	closeOne := func(sk uint64) conntrack.Conn {
		t.Helper()
		st := spec{src: "10.0.0.1:40000", dst: "10.0.0.2:5432", pid: 4242, comm: "psql", cgroup: 77,
			start: time.Duration(sk) * time.Second, dir: conntrack.DirActive, flags: est}.state(t)
		tb.Close(closeRec{sk: sk, end: time.Duration(sk)*time.Second + time.Millisecond}.event(st))
		for _, c := range conns(tb) {
			if c.Opened.Equal(ktimeToWall(ktime(time.Duration(sk) * time.Second))) {
				return c
			}
		}
		t.Fatalf("connection %d not in the table", sk)
		return conntrack.Conn{}
	}
	if c := closeOne(1); c.Workload.Pod != "" {
		t.Fatalf("pod %q before the resolver knew one", c.Workload.Pod)
	}
	r.workloads[77] = conntrack.Workload{Pod: "web-0", Namespace: "shop"}
	r.peers[netip.MustParseAddr("10.0.0.2")] = [2]string{"data", "db-0"}
	if c := closeOne(2); c.Workload.Pod != "" {
		t.Errorf("pod %q within the same flush interval: the answer was not reused", c.Workload.Pod)
	}
	observe(tb, nil)
	c := closeOne(3)
	if c.Workload.Pod != "web-0" {
		t.Errorf("pod %q after a flush, want web-0", c.Workload.Pod)
	}
	var found bool
	for k := range rollups(tb) {
		found = found || k.Pod == "web-0" && k.RemotePod == "db-0"
	}
	if !found {
		t.Errorf("no rollup of pod web-0 calling db-0 after a flush: %v", rollups(tb))
	}
}
