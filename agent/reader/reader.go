// Package reader takes close records off the kernel's event transport (BPF
// ring buffer or perf event array) and decodes them without allocating. The
// kernel sends them in batches (struct close_batch): one transport record
// carries the closes one CPU gathered.
package reader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
)

// Event is one closed socket, exactly as the kernel wrote it.
type Event = bpf.TcpobsConnEvent

const (
	eventSize = int(unsafe.Sizeof(Event{}))
	// batchHeader is where close_batch's records start (after n and busy).
	batchHeader = int(unsafe.Offsetof(bpf.TcpobsCloseBatch{}.Ev))
	maxBatch    = len(bpf.TcpobsCloseBatch{}.Ev)
)

// ErrClosed ends the read loop once Close was called.
var ErrClosed = errors.New("reader closed")

// Reader yields events. Records the transport could not take are counted
// by the kernel (transport_full), not here.
//
// No read blocks in a system call: a goroutine blocked in epoll_wait holds
// its P there, and the Go runtime's sysmon then keeps waking every 20 us to
// take it back (make bench: the observer's CPU per crr operation went from
// 1.7 to 0.9 us with this and fewer wake-ups).
// Read never blocks, and Wait parks the goroutine in Go's own netpoller.
type Reader interface {
	// Read fills ev with the next event. It returns os.ErrDeadlineExceeded
	// when nothing is left to read now.
	Read(ev *Event) error
	// Wait returns when records may be waiting: the kernel signalled a
	// backlog, or d passed.
	Wait(d time.Duration)
	Close() error
}

// nonBlocking is a deadline already past: every wait returns at once.
var nonBlocking = time.Unix(1, 0)

// decode copies a raw close record into ev: a fixed-layout struct shared
// with the kernel through bpf2go, so no reflection is involved.
func decode(raw []byte, ev *Event) error {
	if len(raw) < eventSize {
		return fmt.Errorf("short record: %d bytes, want %d", len(raw), eventSize)
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(ev)), eventSize), raw)
	return nil
}

// batch walks the close records of one transport record. The bytes belong
// to the transport's reusable record buffer: the batch is used up before
// the next record is read.
type batch struct{ rest []byte }

// load checks a transport record's header and makes its records next.
func (b *batch) load(raw []byte) error {
	if len(raw) < batchHeader {
		return fmt.Errorf("short record: %d bytes, want a %d-byte batch header", len(raw), batchHeader)
	}
	n := int(binary.LittleEndian.Uint32(raw))
	if n < 1 || n > maxBatch {
		return fmt.Errorf("batch of %d records, want 1 to %d", n, maxBatch)
	}
	if want := batchHeader + n*eventSize; len(raw) < want {
		return fmt.Errorf("short record: %d bytes for a batch of %d, want %d", len(raw), n, want)
	}
	b.rest = raw[batchHeader : batchHeader+n*eventSize]
	return nil
}

// next decodes the batch's next record into ev, if any is left.
func (b *batch) next(ev *Event) bool {
	if len(b.rest) == 0 {
		return false
	}
	_ = decode(b.rest, ev) // load checked the length
	b.rest = b.rest[eventSize:]
	return true
}

// The kernel wakes the ring's readers only once a backlog has piled up (see
// wakeup_bytes in tcpobs.c); between wake-ups the observer drains on a timer.
type ringReader struct {
	rd   *ringbuf.Reader
	rec  ringbuf.Record
	cur  batch
	wake *os.File        // a duplicate of the ring's fd, in Go's netpoller
	poll syscall.RawConn // nil where the ring's fd cannot be polled: timer only
}

// NewRingbuf reads the ring buffer map m.
func NewRingbuf(m *ebpf.Map) (Reader, error) {
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer reader: %w", err)
	}
	rd.SetDeadline(nonBlocking)
	r := &ringReader{rd: rd}
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		rd.Close()
		return nil, fmt.Errorf("duplicate ring buffer fd: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		rd.Close()
		return nil, fmt.Errorf("ring buffer fd: %w", err)
	}
	// A non-blocking fd that supports poll joins the netpoller here.
	r.wake = os.NewFile(uintptr(fd), "ringbuf")
	if r.wake.SetReadDeadline(time.Time{}) == nil {
		r.poll, _ = r.wake.SyscallConn()
	}
	return r, nil
}

func (r *ringReader) Wait(d time.Duration) {
	if r.poll == nil {
		time.Sleep(d)
		return
	}
	_ = r.wake.SetReadDeadline(time.Now().Add(d))
	waited := false
	_ = r.poll.Read(func(uintptr) bool {
		done := waited
		waited = true
		return done // false once: park until the ring's fd signals or the deadline
	})
}

func (r *ringReader) Read(ev *Event) error {
	if r.cur.next(ev) {
		return nil
	}
	err := r.rd.ReadInto(&r.rec)
	switch {
	case err == nil:
		if err := r.cur.load(r.rec.RawSample); err != nil {
			return err
		}
		r.cur.next(ev)
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return err
	case errors.Is(err, ringbuf.ErrClosed):
		return ErrClosed
	}
	return fmt.Errorf("read ring buffer: %w", err)
}

func (r *ringReader) Close() error { return errors.Join(r.rd.Close(), r.wake.Close()) }

// perfPoll is how often perf buffers are drained: the reader cannot reach the
// per-CPU fds to wait on them. 1 MiB per CPU holds ~3.5k close records (in
// batches of 8), so this keeps up with 140k closes per second on each CPU.
const perfPoll = 25 * time.Millisecond

type perfReader struct {
	rd  *perf.Reader
	rec perf.Record
	cur batch
}

// NewPerf reads the perf event array m with perCPU bytes per CPU.
func NewPerf(m *ebpf.Map, perCPU int) (Reader, error) {
	// Nobody waits for the kernel's wake-ups here; the watermark only keeps
	// it from waking on every record (cilium's default without one).
	rd, err := perf.NewReaderWithOptions(m, perCPU, perf.ReaderOptions{Watermark: perCPU / 16})
	if err != nil {
		return nil, fmt.Errorf("open perf reader: %w", err)
	}
	rd.SetDeadline(nonBlocking)
	return &perfReader{rd: rd}, nil
}

func (r *perfReader) Wait(d time.Duration) { time.Sleep(min(d, perfPoll)) }

func (r *perfReader) Read(ev *Event) error {
	if r.cur.next(ev) {
		return nil
	}
	for {
		err := r.rd.ReadInto(&r.rec)
		switch {
		case err == nil:
			if r.rec.LostSamples > 0 {
				// The output failed in the kernel, which counted
				// the batch's records as transport_full.
				continue
			}
			if err := r.cur.load(r.rec.RawSample); err != nil {
				return err
			}
			r.cur.next(ev)
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			return err
		case errors.Is(err, perf.ErrClosed):
			return ErrClosed
		}
		return fmt.Errorf("read perf buffer: %w", err)
	}
}

func (r *perfReader) Close() error { return r.rd.Close() }
