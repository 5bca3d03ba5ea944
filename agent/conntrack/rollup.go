package conntrack

import (
	"math"
	"net/netip"
	"sort"
	"strconv"
)

// RollupKey groups connections by who owns them and whom they talk to. For
// passive connections the remote port is the client's ephemeral port, which
// would make every connection its own group; ServicePort is therefore the
// server's port on both sides (the peer's for active, ours for passive).
type RollupKey struct {
	Process, ContainerID, Pod, Namespace string
	RemoteIP                             netip.Addr
	ServicePort                          uint16
	Direction                            Direction
	RemotePod, RemoteNamespace           string
}

// RollupLabelNames match RollupKey.Values.
var RollupLabelNames = []string{"process_name", "container_id", "pod", "namespace", "remote_ip", "service_port", "direction", "remote_pod", "remote_namespace"}

// Values returns the label values in RollupLabelNames order.
func (k RollupKey) Values() []string {
	return []string{k.Process, k.ContainerID, k.Pod, k.Namespace, addrString(k.RemoteIP),
		strconv.Itoa(int(k.ServicePort)), k.Direction.String(), k.RemotePod, k.RemoteNamespace}
}

// Rollup accumulates every connection of one RollupKey. All fields except
// Active only grow.
type Rollup struct {
	Key                      RollupKey
	Opened, Closed, Failed   uint64
	Active                   int64
	BytesSent, BytesReceived uint64
	Retransmits              uint64
	ResetsRx, ResetsTx       uint64
	RTT                      Histogram // seconds, from the kernel's log2 buckets
	Duration                 Histogram // seconds, per closed connection
	values                   []string
}

// Values returns the label values of the rollup.
func (r *Rollup) Values() []string { return r.values }

// Histogram is a fixed-bucket histogram in Prometheus form (upper bounds,
// non-cumulative counts; the last bucket is +Inf).
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64
}

// Observe adds one value.
func (h *Histogram) Observe(v float64) {
	i := sort.SearchFloat64s(h.Bounds, v)
	h.Counts[i]++
	h.Count++
	h.Sum += v
}

// Cumulative returns the bucket map client_golang's const histograms take.
func (h *Histogram) Cumulative() map[float64]uint64 {
	out := make(map[float64]uint64, len(h.Bounds))
	var acc uint64
	for i, b := range h.Bounds {
		acc += h.Counts[i]
		out[b] = acc
	}
	return out
}

// RTTBounds are the kernel's bucket upper bounds in seconds: 1us, 2us, 4us, ...
var RTTBounds = func() []float64 {
	b := make([]float64, RTTBuckets-1)
	for i := range b {
		b[i] = math.Ldexp(1, i) * 1e-6
	}
	return b
}()

// DurationBounds cover a millisecond to an hour.
var DurationBounds = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600}

func newHistogram(bounds []float64) Histogram {
	return Histogram{Bounds: bounds, Counts: make([]uint64, len(bounds)+1)}
}

func (t *Table) rollupFor(c *Conn) *Rollup {
	k := RollupKey{
		Process: c.Process, ContainerID: c.Workload.ContainerID,
		Pod: c.Workload.Pod, Namespace: c.Workload.Namespace,
		RemoteIP: c.DstIP.Unmap(), Direction: c.Direction,
		ServicePort: c.DstPort,
	}
	if c.Direction == DirPassive {
		k.ServicePort = c.SrcPort
	}
	if t.opt.Resolver != nil && c.DstIP.IsValid() {
		p, ok := t.recentPeers.get(k.RemoteIP, t.flushes)
		if !ok {
			p.namespace, p.pod, _ = t.opt.Resolver.Peer(k.RemoteIP)
			t.recentPeers.put(k.RemoteIP, t.flushes, p)
		}
		k.RemoteNamespace, k.RemotePod = p.namespace, p.pod
	}
	// Rollups never change: a remembered one stays good across generations.
	if r, ok := t.recentRollups.get(k, 0); ok {
		return r
	}
	r := t.rollups[k]
	if r == nil {
		r = &Rollup{Key: k, RTT: newHistogram(RTTBounds), Duration: newHistogram(DurationBounds)}
		r.values = k.Values()
		t.rollups[k] = r
	}
	t.recentRollups.put(k, 0, r)
	return r
}

// account adds what c gained since last time to its rollup, so rollup
// counters only grow, whatever order live and final figures arrive in.
func (t *Table) account(c *Conn) {
	r, a := c.rollup, &c.acct
	if c.BytesSent > a.sent {
		r.BytesSent += c.BytesSent - a.sent
		a.sent = c.BytesSent
	}
	if c.BytesReceived > a.received {
		r.BytesReceived += c.BytesReceived - a.received
		a.received = c.BytesReceived
	}
	if c.Retransmits > a.retrans {
		r.Retransmits += c.Retransmits - a.retrans
		a.retrans = c.Retransmits
	}
	if c.Flags&FlagResetRx != 0 && !a.resetRx {
		r.ResetsRx++
		a.resetRx = true
	}
	if c.Flags&FlagResetTx != 0 && !a.resetTx {
		r.ResetsTx++
		a.resetTx = true
	}
	if c.RTTSamples > a.rttSamples {
		// The count is what the buckets gained, not the sample counter: a
		// per-CPU slot read while its CPU was mid-update can have one ahead
		// of the other, and a count below its buckets' sum would make the
		// +Inf bucket negative.
		for i, v := range c.RTTHist {
			if v > a.rttHist[i] {
				r.RTT.Counts[i] += uint64(v - a.rttHist[i])
				r.RTT.Count += uint64(v - a.rttHist[i])
				a.rttHist[i] = v
			}
		}
		if c.RTTSumMicros > a.rttSum {
			r.RTT.Sum += float64(c.RTTSumMicros-a.rttSum) * 1e-6
		}
		a.rttSamples, a.rttSum = c.RTTSamples, c.RTTSumMicros
	}
}

// EachRollup calls fn for every rollup under the table's lock.
func (t *Table) EachRollup(fn func(r *Rollup)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.rollups {
		fn(r)
	}
}
