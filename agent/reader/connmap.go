package reader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
)

// State is one entry of the kernel's connection map.
type State = bpf.TcpobsConnState

// ConnMap reads the kernel's open connections in batches, with buffers
// reused between flushes.
type ConnMap struct {
	m      *ebpf.Map
	percpu bool
	ncpu   int
	keys   []uint64
	vals   []State
	merged State
	batch  bool
}

// Entries per read system call: fewer calls per flush at scale (1 MiB of buffer).
const batchSize = 4096

// NewConnMap reads m; percpu says whether m keeps a value per CPU.
func NewConnMap(m *ebpf.Map, percpu bool) (*ConnMap, error) {
	ncpu := 1
	if percpu {
		n, err := ebpf.PossibleCPU()
		if err != nil {
			return nil, fmt.Errorf("count possible CPUs: %w", err)
		}
		ncpu = n
	}
	return &ConnMap{m: m, percpu: percpu, ncpu: ncpu, batch: true,
		keys: make([]uint64, batchSize), vals: make([]State, batchSize*ncpu)}, nil
}

// Each calls fn for every entry; per-CPU values are merged first. The
// pointer passed to fn is only valid during the call. It returns the count.
func (r *ConnMap) Each(fn func(sk uint64, s *State)) (int, error) {
	if r.batch {
		n, err := r.eachBatch(fn)
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return n, err
		}
		r.batch = false // kernels before 5.6: iterate instead
	}
	return r.eachIter(fn)
}

func (r *ConnMap) eachBatch(fn func(sk uint64, s *State)) (int, error) {
	var cursor ebpf.MapBatchCursor
	total := 0
	for {
		n, err := r.m.BatchLookup(&cursor, r.keys, r.vals, nil)
		for i := 0; i < n; i++ {
			fn(r.keys[i], r.value(i))
		}
		total += n
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("read connection map: %w", err)
		}
	}
}

func (r *ConnMap) eachIter(fn func(sk uint64, s *State)) (int, error) {
	var k uint64
	it := r.m.Iterate()
	total := 0
	vals := r.vals[:r.ncpu]
	for {
		var ok bool
		if r.percpu {
			ok = it.Next(&k, &vals)
		} else {
			ok = it.Next(&k, &vals[0])
		}
		if !ok {
			break
		}
		fn(k, r.value(0))
		total++
	}
	if err := it.Err(); err != nil {
		return total, fmt.Errorf("iterate connection map: %w", err)
	}
	return total, nil
}

func (r *ConnMap) value(i int) *State {
	if !r.percpu {
		return &r.vals[i]
	}
	r.merged = State{}
	for c := 0; c < r.ncpu; c++ {
		MergeState(&r.merged, &r.vals[i*r.ncpu+c])
	}
	return &r.merged
}

// MergeState folds one CPU's share into dst, as the kernel's merge_state does
// (identity from the slot that saw the open; cumulative counters: the
// largest; histograms: the sum).
func MergeState(dst, src *State) {
	if src.StartNs != 0 && (dst.StartNs == 0 || src.StartNs < dst.StartNs) {
		dst.StartNs, dst.Owner, dst.Direction, dst.AckedBase = src.StartNs, src.Owner, src.Direction, src.AckedBase
	}
	if src.Family != 0 {
		dst.Family, dst.Saddr, dst.Daddr, dst.Dport = src.Family, src.Saddr, src.Daddr, src.Dport
	}
	if src.Sport != 0 {
		dst.Sport = src.Sport
	}
	dst.Flags |= src.Flags
	if src.UpdatedNs > dst.UpdatedNs {
		dst.UpdatedNs, dst.SrttUs, dst.SndCwnd = src.UpdatedNs, src.SrttUs, src.SndCwnd
	}
	dst.Sent = max(dst.Sent, src.Sent)
	dst.BytesReceived = max(dst.BytesReceived, src.BytesReceived)
	dst.TotalRetrans = max(dst.TotalRetrans, src.TotalRetrans)
	dst.Retransmits += src.Retransmits
	dst.RttSamples += src.RttSamples
	dst.RttSumUs += src.RttSumUs
	for b := range dst.RttHist {
		dst.RttHist[b] += src.RttHist[b]
	}
}
