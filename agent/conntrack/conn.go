// Package conntrack keeps the user-space view of every TCP connection: open
// ones refreshed from the kernel's connection map at each flush, closed ones
// completed from their exact close records, kept visible for a retention
// period and then folded away. It also keeps the rollups by workload and
// remote endpoint. Time enters through an injected clock.
package conntrack

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
)

// RTTBuckets is the number of log2 RTT buckets the kernel keeps: bucket 0
// is < 1us, bucket b holds [2^(b-1), 2^b) us, the last one is open-ended.
const RTTBuckets = len(bpf.TcpobsConnState{}.RttHist)

// Direction says which end opened the connection.
type Direction uint8

const (
	DirUnknown Direction = Direction(bpf.TcpobsDirectionDIR_UNKNOWN)
	DirActive  Direction = Direction(bpf.TcpobsDirectionDIR_ACTIVE)  // this host connected
	DirPassive Direction = Direction(bpf.TcpobsDirectionDIR_PASSIVE) // this host accepted
)

func (d Direction) String() string {
	switch d {
	case DirActive:
		return "active"
	case DirPassive:
		return "passive"
	}
	return "unknown"
}

// Flags as the kernel sets them.
const (
	FlagEstablished   = uint32(bpf.TcpobsConnFlagFLAG_ESTABLISHED)
	FlagConnectFailed = uint32(bpf.TcpobsConnFlagFLAG_CONNECT_FAILED)
	FlagResetRx       = uint32(bpf.TcpobsConnFlagFLAG_RESET_RX)
	FlagResetTx       = uint32(bpf.TcpobsConnFlagFLAG_RESET_TX)
	FlagPartial       = uint32(bpf.TcpobsConnFlagFLAG_PARTIAL)
	FlagUntracked     = uint32(bpf.TcpobsConnFlagFLAG_UNTRACKED)
)

// Workload is the container/pod context of a process; empty for host processes.
type Workload struct {
	ContainerID, PodUID, Pod, Namespace string
}

// ownerKey is what the kernel says of a connection's owner; owner is what
// the table makes of it.
type ownerKey struct {
	cgroupID uint64
	pid      uint32
	comm     [16]int8
}

type owner struct {
	process  string
	workload Workload
}

// peer is the pod a remote address belongs to (empty if none).
type peer struct{ namespace, pod string }

// Resolver supplies workload context; implemented by the metadata package.
type Resolver interface {
	Workload(cgroupID uint64, pid uint32) Workload
	// Peer names the pod that owns a remote address, if any.
	Peer(ip netip.Addr) (namespace, pod string, ok bool)
}

type connKey struct {
	sk    uint64
	start uint64 // kernel open time: tells a reused socket address apart
}

// Conn is one connection as the table knows it.
type Conn struct {
	key              connKey
	SrcIP, DstIP     netip.Addr
	SrcPort, DstPort uint16
	Direction        Direction
	PID              uint32
	Process          string
	CgroupID         uint64
	Workload         Workload
	BytesSent        uint64
	BytesReceived    uint64
	Retransmits      uint64
	SRTT, RTTVar     time.Duration
	Cwnd             uint32
	Flags            uint32
	Opened, Closed   time.Time // Closed is zero while open
	RTTHist          [RTTBuckets]uint32
	RTTSamples       uint64
	RTTSumMicros     uint64

	hasSeries bool // false when over the per-connection series cap
	rollup    *Rollup
	acct      accounted // what this connection already added to its rollup
	seenFlush uint64    // last flush generation that saw it in the kernel map
}

type accounted struct {
	sent, received, retrans, rttSamples, rttSum uint64
	rttHist                                     [RTTBuckets]uint32
	resetRx, resetTx                            bool
}

// Labels returns the per-connection series label values in the order of
// ConnLabelNames, or nil if this connection has no series (over the cap).
// They are built at scrape time, not per event: most short connections are
// scraped once or twice in their retention, and the event path stays free
// of allocation.
func (c *Conn) Labels() []string {
	if !c.hasSeries {
		return nil
	}
	return c.makeLabels()
}

// ConnLabelNames are the per-connection labels fixed by the project's contract (docs/metrics.md).
var ConnLabelNames = []string{"src_ip", "src_port", "dst_ip", "dst_port", "pid", "process_name", "container_id", "pod", "namespace"}

func (c *Conn) makeLabels() []string {
	return []string{
		addrString(c.SrcIP), strconv.Itoa(int(c.SrcPort)),
		addrString(c.DstIP), strconv.Itoa(int(c.DstPort)),
		pidString(c.PID), c.Process,
		c.Workload.ContainerID, c.Workload.Pod, c.Workload.Namespace,
	}
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.Unmap().String()
}

func pidString(pid uint32) string {
	if pid == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(pid), 10)
}

// Open reports whether the connection has not closed yet.
func (c *Conn) Open() bool { return c.Closed.IsZero() }

// addrFrom reads a kernel address: 4 bytes for AF_INET, 16 for AF_INET6.
func addrFrom(family uint16, b *[16]uint8) netip.Addr {
	if family == 2 {
		return netip.AddrFrom4([4]byte{b[0], b[1], b[2], b[3]})
	}
	return netip.AddrFrom16(*b)
}
