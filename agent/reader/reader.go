// Package reader takes close records off the kernel's event transport (BPF
// ring buffer or perf event array) and decodes them without allocating.
package reader

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
)

// Event is one closed socket, exactly as the kernel wrote it.
type Event = bpf.TcpobsConnEvent

const eventSize = int(unsafe.Sizeof(Event{}))

// ErrClosed ends the read loop once Close was called.
var ErrClosed = errors.New("reader closed")

// Reader yields events; Lost counts records the transport dropped.
type Reader interface {
	// Read fills ev with the next event. It returns os.ErrDeadlineExceeded
	// when the drain interval passed with nothing to read.
	Read(ev *Event) error
	Lost() uint64
	Close() error
}

// decode copies a raw record into ev: a fixed-layout struct shared with the
// kernel through bpf2go, so no reflection is involved.
func decode(raw []byte, ev *Event) error {
	if len(raw) < eventSize {
		return fmt.Errorf("short record: %d bytes, want %d", len(raw), eventSize)
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(ev)), eventSize), raw)
	return nil
}

// The kernel wakes the reader only once a batch has piled up (see
// wakeup_bytes in tcpobs.c); the drain interval bounds how long a trickle
// of records may wait.
type ringReader struct {
	rd    *ringbuf.Reader
	rec   ringbuf.Record
	drain time.Duration
	next  time.Time
}

// NewRingbuf reads the ring buffer map m.
func NewRingbuf(m *ebpf.Map, drain time.Duration) (Reader, error) {
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer reader: %w", err)
	}
	r := &ringReader{rd: rd, drain: drain}
	r.arm()
	return r, nil
}

func (r *ringReader) arm() {
	r.next = time.Now().Add(r.drain)
	r.rd.SetDeadline(r.next)
}

func (r *ringReader) Read(ev *Event) error {
	err := r.rd.ReadInto(&r.rec)
	switch {
	case err == nil:
		return decode(r.rec.RawSample, ev)
	case errors.Is(err, os.ErrDeadlineExceeded):
		r.arm()
		return err
	case errors.Is(err, ringbuf.ErrClosed):
		return ErrClosed
	}
	return fmt.Errorf("read ring buffer: %w", err)
}

func (r *ringReader) Lost() uint64 { return 0 } // the kernel side counts a full ring
func (r *ringReader) Close() error { return r.rd.Close() }

type perfReader struct {
	rd    *perf.Reader
	rec   perf.Record
	lost  atomic.Uint64
	drain time.Duration
}

// NewPerf reads the perf event array m with perCPU bytes per CPU. A
// watermark batches wake-ups the way the ring buffer's threshold does.
func NewPerf(m *ebpf.Map, perCPU int, drain time.Duration) (Reader, error) {
	rd, err := perf.NewReaderWithOptions(m, perCPU, perf.ReaderOptions{Watermark: perCPU / 16})
	if err != nil {
		return nil, fmt.Errorf("open perf reader: %w", err)
	}
	r := &perfReader{rd: rd, drain: drain}
	rd.SetDeadline(time.Now().Add(drain))
	return r, nil
}

func (r *perfReader) Read(ev *Event) error {
	for {
		err := r.rd.ReadInto(&r.rec)
		switch {
		case err == nil:
			if r.rec.LostSamples > 0 {
				r.lost.Add(r.rec.LostSamples)
				continue
			}
			return decode(r.rec.RawSample, ev)
		case errors.Is(err, os.ErrDeadlineExceeded):
			r.rd.SetDeadline(time.Now().Add(r.drain))
			return err
		case errors.Is(err, perf.ErrClosed):
			return ErrClosed
		}
		return fmt.Errorf("read perf buffer: %w", err)
	}
}

func (r *perfReader) Lost() uint64 { return r.lost.Load() }
func (r *perfReader) Close() error { return r.rd.Close() }
