package loader

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
)

// TestPipeline proves the whole BPF pipeline on the running kernel: the
// committed object loads, attaches, sees a TCP connection this test makes,
// and leaves nothing attached after Close.
func TestPipeline(t *testing.T) {
	privtest.Require(t)
	before := attachedLinks(t)

	obs, err := Load(Options{Ringbuf: true, RingbufBytes: 1 << 20, ConnMapType: ebpf.Hash, MaxConnections: 1024, SampleRate: 1})
	if err != nil {
		t.Fatal(err)
	}
	progIDs := map[ebpf.ProgramID]bool{}
	for name, p := range obs.Programs() {
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		progIDs[id] = true
		if info.Name != name {
			t.Errorf("program %q is named %q in the kernel", name, info.Name)
		}
	}
	rd, err := ringbuf.NewReader(obs.Objs.EventsRb)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("pipeline-check")
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, c)
		c.Close()
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	clientPort := uint16(c.LocalAddr().(*net.TCPAddr).Port)
	c.Write(payload)
	c.Close()
	ln.Close()

	// The client's close record carries its port and exact payload.
	deadline := time.Now().Add(5 * time.Second)
	var found bool
	for !found && time.Now().Before(deadline) {
		rd.SetDeadline(time.Now().Add(200 * time.Millisecond))
		rec, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		ev := (*bpf.TcpobsConnEvent)(unsafe.Pointer(&rec.RawSample[0]))
		if ev.State.Sport == clientPort && ev.State.Direction == uint8(bpf.TcpobsDirectionDIR_ACTIVE) {
			found = true
			if ev.BytesSent != uint64(len(payload)) {
				t.Errorf("bytes sent = %d, want %d", ev.BytesSent, len(payload))
			}
		}
	}
	if !found {
		t.Fatal("no close record for the test's own connection")
	}

	if err := obs.Close(); err != nil {
		t.Fatal(err)
	}
	for id, prog := range attachedLinks(t) {
		if _, old := before[id]; !old && progIDs[prog] {
			t.Errorf("link %d of program %d still attached after Close", id, prog)
		}
	}
}

// attachedLinks lists every BPF link in the kernel with its program.
func attachedLinks(t *testing.T) map[link.ID]ebpf.ProgramID {
	t.Helper()
	out := map[link.ID]ebpf.ProgramID{}
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		l := it.Take()
		if info, err := l.Info(); err == nil {
			out[it.ID] = info.Program
		}
		l.Close()
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
