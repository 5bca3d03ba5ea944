package conntrack

import (
	"net/netip"
	"sync"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
)

// State is one entry of the kernel's connection map.
type State = bpf.TcpobsConnState

// Options configure a Table.
type Options struct {
	Retention time.Duration // how long closed connections stay visible (>= 30s)
	MaxSeries int           // cap on connections with per-connection series
	Resolver  Resolver      // nil: no workload context
	Now       func() time.Time
	// KtimeToWall converts the kernel's monotonic nanoseconds to wall time.
	KtimeToWall func(ns uint64) time.Time
}

// Counters are the table's own totals, for self-metrics.
type Counters struct {
	Closes, Snapshots, Evicted, SeriesOverflow, LostOpen uint64
}

// Table is safe for concurrent use: the event reader, the flusher and
// scrapes each take the lock briefly.
type Table struct {
	opt           Options
	mu            sync.Mutex
	open          map[uint64]*Conn  // by socket address
	lost          map[connKey]*Conn // retired without a close record (rare): a late record completes them
	order         []*Conn           // closed connections in close order, for eviction
	rollups       map[RollupKey]*Rollup
	recentRollups recent[RollupKey, *Rollup]
	recentOwners  recent[ownerKey, owner]
	recentPeers   recent[netip.Addr, peer]
	slab          []Conn // Conns are carved from chunks: one allocation per 256 connections
	series        int
	flushes       uint64              // passes begun
	seen          int                 // open connections the current pass has seen
	complete      uint64              // the last pass whose walk read the whole map
	procs         map[[16]byte]string // interned command names
	free          []*Conn
	ctr           Counters
}

// New returns an empty table.
func New(o Options) *Table {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Retention <= 0 {
		o.Retention = 30 * time.Second
	}
	return &Table{
		opt:     o,
		open:    map[uint64]*Conn{},
		lost:    map[connKey]*Conn{},
		rollups: map[RollupKey]*Rollup{},
		procs:   map[[16]byte]string{},
	}
}

func (t *Table) procName(comm [16]int8) string {
	var b [16]byte
	for i, c := range comm {
		b[i] = byte(c)
	}
	if s, ok := t.procs[b]; ok {
		return s
	}
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	s := string(b[:n])
	if len(t.procs) < 65536 {
		t.procs[b] = s
	}
	return s
}

func (t *Table) newConn() *Conn {
	if n := len(t.free); n > 0 {
		c := t.free[n-1]
		t.free = t.free[:n-1]
		*c = Conn{}
		return c
	}
	if len(t.slab) == 0 {
		t.slab = make([]Conn, 256)
	}
	c := &t.slab[0]
	t.slab = t.slab[1:]
	return c
}

// fill sets identity fields from a kernel state the first time they are known.
func (t *Table) fill(c *Conn, s *State) {
	if s.Family != 0 {
		c.SrcIP, c.DstIP = addrFrom(s.Family, &s.Saddr), addrFrom(s.Family, &s.Daddr)
		if s.Sport != 0 {
			c.SrcPort = s.Sport
		}
		c.DstPort = s.Dport
	}
	if c.PID == 0 && s.Owner.Pid != 0 {
		c.PID = s.Owner.Pid
		c.CgroupID = s.Owner.CgroupId
		k := ownerKey{c.CgroupID, c.PID, s.Owner.Comm}
		o, ok := t.recentOwners.get(k, t.flushes)
		if !ok {
			o.process = t.procName(s.Owner.Comm)
			if t.opt.Resolver != nil {
				o.workload = t.opt.Resolver.Workload(c.CgroupID, c.PID)
			}
			t.recentOwners.put(k, t.flushes, o)
		}
		c.Process, c.Workload = o.process, o.workload
	}
	if c.Direction == DirUnknown {
		c.Direction = Direction(s.Direction)
	}
	if c.Opened.IsZero() && s.StartNs != 0 && t.opt.KtimeToWall != nil {
		c.Opened = t.opt.KtimeToWall(s.StartNs)
	}
	c.Flags |= s.Flags
}

// admit gives a new connection its series (under the cap) and its rollup.
func (t *Table) admit(c *Conn) {
	if t.series < t.opt.MaxSeries {
		c.hasSeries = true
		t.series++
	} else {
		t.ctr.SeriesOverflow++
	}
	c.rollup = t.rollupFor(c)
	c.rollup.Opened++
	c.rollup.Active++
}

// Walk reads every entry of the kernel's connection map once, calling
// observe for each (the *State only during the call), and returns how many
// it read. reader.ConnMap.Each is one.
type Walk func(observe func(sk uint64, s *State)) (int, error)

// Flush runs one snapshot pass: walk reads the kernel map into the table.
// The table stays locked for the whole pass, so no close record is applied
// while the kernel map is being read: an entry the walk returns is either
// still open or its close record comes after the pass (the kernel deletes
// the entry before it emits the record). The lock is taken and released
// here only, whatever walk does (fails, panics).
//
// A pass whose walk fails keeps the entries it did read but retires
// nothing: a partial read says nothing about the entries it did not reach.
// Flush returns walk's count and error.
func (t *Table) Flush(walk Walk) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushes++
	t.ctr.Snapshots++
	t.seen = 0
	n, err := walk(t.observe)
	if err != nil {
		return n, err
	}
	// Every open connection seen by this pass: none to retire, no need to
	// look at each.
	if t.seen < len(t.open) {
		t.retireUnseen()
	}
	t.complete = t.flushes
	return n, nil
}

// observe applies one live entry of the kernel's connection map; only
// inside Flush, under the lock.
func (t *Table) observe(sk uint64, s *State) {
	key := connKey{sk, s.StartNs}
	if _, done := t.lost[key]; done {
		return
	}
	c := t.open[sk]
	if c != nil && c.key.start == s.StartNs && unchanged(c, s) {
		// Most open connections are idle between flushes.
		c.seenFlush = t.flushes
		t.seen++
		return
	}
	if c != nil && c.key.start != s.StartNs && s.StartNs != 0 && c.key.start != 0 {
		// The socket address was reused and the old one's close record
		// was lost: retire it with what was last seen.
		delete(t.open, sk)
		t.ctr.LostOpen++
		t.retireLost(c, t.opt.Now())
		c = nil
	}
	if c == nil {
		c = t.newConn()
		c.key = key
		t.fill(c, s)
		t.open[sk] = c
		t.admit(c)
	} else {
		if c.key.start == 0 {
			c.key.start = s.StartNs
		}
		t.fill(c, s)
	}
	c.seenFlush = t.flushes
	t.seen++
	if s.Flags&FlagEstablished != 0 && s.Sent >= s.AckedBase {
		c.BytesSent = max(c.BytesSent, s.Sent-s.AckedBase)
		c.BytesReceived = max(c.BytesReceived, s.BytesReceived)
	}
	c.Retransmits = max(c.Retransmits, uint64(s.Retransmits), uint64(s.TotalRetrans))
	if s.SrttUs != 0 {
		c.SRTT = time.Duration(s.SrttUs) * time.Microsecond
		c.Cwnd = s.SndCwnd
	}
	t.mergeRTT(c, s)
	t.account(c)
}

// unchanged reports whether applying s to c would change nothing: every
// field observe reads is what c already holds.
func unchanged(c *Conn, s *State) bool {
	return c.PID != 0 && c.SrcPort == s.Sport && c.Flags|s.Flags == c.Flags &&
		s.Flags&FlagEstablished != 0 && s.Sent >= s.AckedBase &&
		c.BytesSent == s.Sent-s.AckedBase && c.BytesReceived == s.BytesReceived &&
		c.Retransmits == max(uint64(s.Retransmits), uint64(s.TotalRetrans)) &&
		c.RTTSamples == uint64(s.RttSamples) &&
		(s.SrttUs == 0 || c.SRTT == time.Duration(s.SrttUs)*time.Microsecond && c.Cwnd == s.SndCwnd)
}

func (t *Table) mergeRTT(c *Conn, s *State) {
	if uint64(s.RttSamples) < c.RTTSamples {
		return
	}
	c.RTTHist = s.RttHist
	c.RTTSamples = uint64(s.RttSamples)
	c.RTTSumMicros = s.RttSumUs
}

// retireUnseen retires open connections the kernel no longer has and that
// produced no close record within a flush (evicted from an LRU map, or a
// record lost to a full transport): those seen neither by this pass nor by
// the last complete one before it. They count as closed with the totals
// last seen.
func (t *Table) retireUnseen() {
	now := t.opt.Now()
	for sk, c := range t.open {
		if c.seenFlush < t.complete {
			delete(t.open, sk)
			t.ctr.LostOpen++
			t.retireLost(c, now)
		}
	}
}

// retireLost retires c without its close record; a record arriving late
// still completes it.
func (t *Table) retireLost(c *Conn, at time.Time) {
	t.lost[c.key] = c
	t.retire(c, at, true)
}

// Close applies a close record: its totals are exact.
func (t *Table) Close(ev *bpf.TcpobsConnEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ctr.Closes++
	s := &ev.State
	key := connKey{ev.Sk, s.StartNs}
	c, wasClosed := t.lost[key]
	if !wasClosed {
		// An untracked record (no start: the kernel had no entry) completes
		// the open connection at its address only if that one opened before
		// the close: the reader lags behind the flushes' direct map reads,
		// and a newer socket may already reuse the address.
		if o := t.open[ev.Sk]; o != nil && (o.key.start == s.StartNs || s.StartNs == 0 && o.key.start < ev.EndNs) {
			c = o
			delete(t.open, ev.Sk)
		}
	}
	if c == nil {
		c = t.newConn()
		c.key = key
		t.fill(c, s)
		t.admit(c)
	} else {
		t.fill(c, s)
	}
	c.BytesSent = ev.BytesSent
	c.BytesReceived = ev.BytesReceived
	c.Retransmits = max(uint64(ev.TotalRetrans), uint64(s.Retransmits))
	c.SRTT = time.Duration(ev.SrttUs) * time.Microsecond
	c.RTTVar = time.Duration(ev.RttvarUs) * time.Microsecond
	c.Cwnd = ev.SndCwnd
	if s.Flags&FlagPartial != 0 {
		// Per-CPU map without cross-CPU lookup (before 5.19): the record
		// holds the closing CPU's share only, which the last flush already
		// counted in its merged view. Keep the larger of the two per bucket,
		// never their sum; samples other CPUs took since that flush are lost.
		var n uint64
		for i, v := range s.RttHist {
			c.RTTHist[i] = max(c.RTTHist[i], v)
			n += uint64(c.RTTHist[i])
		}
		if n > c.RTTSamples {
			c.RTTSumMicros = max(c.RTTSumMicros, s.RttSumUs)
			c.RTTSamples = n
		}
	} else {
		t.mergeRTT(c, s)
	}
	t.account(c)
	if !wasClosed {
		t.retire(c, t.closeTime(ev.EndNs), false)
	}
}

// closeTime converts a record's kernel time, or is now without a converter.
func (t *Table) closeTime(ns uint64) time.Time {
	if t.opt.KtimeToWall != nil && ns != 0 {
		return t.opt.KtimeToWall(ns)
	}
	return t.opt.Now()
}

// retire moves c to the closed list, where its series stay for the
// retention. A connection over the series cap has nothing left to show once
// its rollup has it, so it is recycled at once: under churn past the cap,
// keeping it for the retention would hold hundreds of thousands of cold
// Conns (200 MB at 18k closes/s) and make every close a cache miss. One
// retired without its record (awaiting a late one) is kept regardless.
func (t *Table) retire(c *Conn, at time.Time, awaitingRecord bool) {
	c.Closed = at
	r := c.rollup
	r.Active--
	r.Closed++
	if c.Flags&FlagConnectFailed != 0 {
		r.Failed++
	}
	if !c.Opened.IsZero() && c.Flags&FlagConnectFailed == 0 {
		r.Duration.Observe(at.Sub(c.Opened).Seconds())
	}
	if c.hasSeries || awaitingRecord {
		t.order = append(t.order, c)
	} else {
		t.free = append(t.free, c)
	}
}

// Sweep folds away closed connections older than the retention. Their
// totals live on in the rollups.
func (t *Table) Sweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	cutoff := t.opt.Now().Add(-t.opt.Retention)
	n := 0
	for n < len(t.order) && t.order[n].Closed.Before(cutoff) {
		c := t.order[n]
		if t.lost[c.key] == c {
			delete(t.lost, c.key)
		}
		if c.hasSeries {
			t.series--
		}
		t.ctr.Evicted++
		t.order[n] = nil
		t.free = append(t.free, c)
		n++
	}
	// Compact in place so the backing array is reused, not regrown.
	t.order = t.order[:copy(t.order, t.order[n:])]
}

// Each calls fn for every connection that has per-connection series, under
// the table's lock: fn must not block. Open connections come first, then
// closed ones newest first, so a consumer keeping the first of several
// connections with one 4-tuple keeps the latest.
func (t *Table) Each(fn func(c *Conn)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.open {
		if c.hasSeries {
			fn(c)
		}
	}
	for i := len(t.order) - 1; i >= 0; i-- { // newest first
		if c := t.order[i]; c.hasSeries {
			fn(c)
		}
	}
}

// Len returns the open and retained-closed connection counts.
func (t *Table) Len() (open, closed int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.open), len(t.order)
}

// Counters returns the table's own totals.
func (t *Table) Counters() Counters {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ctr
}
