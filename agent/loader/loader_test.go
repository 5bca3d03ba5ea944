package loader

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/reader"
	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
)

// TestPipeline proves the whole BPF pipeline on the running kernel, for both
// variants of the lifecycle program and both ways close records leave (in
// per-CPU batches, or one by one): the committed object loads, attaches,
// sees the test's own IPv4 and IPv6 connections (tuple, owner and exact
// payload of both sockets in their close records), and leaves nothing
// attached after Close.
func TestPipeline(t *testing.T) {
	privtest.Require(t)
	for _, v := range []struct {
		name           string
		raw, unbatched bool
	}{{"tp_btf", false, false}, {"raw_tracepoint", true, false}, {"tp_btf_unbatched", false, true}} {
		raw := v.raw
		t.Run(v.name, func(t *testing.T) {
			before := attachedLinks(t)
			obs, err := Load(Options{Ringbuf: true, RingbufBytes: 1 << 20, ConnMapType: ebpf.Hash,
				MaxConnections: 1024, SampleRate: 1, RawTracepoint: raw, Unbatched: v.unbatched})
			if err != nil {
				t.Fatal(err)
			}
			if obs.Batched() == v.unbatched {
				t.Fatalf("batched = %v, want %v (%s)", obs.Batched(), !v.unbatched, obs.Disabled["close_batches"])
			}
			wantType := ebpf.RawTracepoint
			if obs.TPBTF {
				wantType = ebpf.Tracing
			} else if !raw {
				t.Logf("tp_btf not used on this kernel: %s", obs.Disabled["tp_btf"])
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
				if name == "set_state" && info.Type != wantType {
					t.Errorf("set_state is a %v program, want %v", info.Type, wantType)
				}
			}
			rd, err := reader.NewRingbuf(obs.Objs.EventsRb)
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			for _, fam := range []struct{ net, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
				checkRecords(t, obs, rd, fam.net, fam.addr)
			}
			if err := obs.Close(); err != nil {
				t.Fatal(err)
			}
			for id, prog := range attachedLinks(t) {
				if _, old := before[id]; !old && progIDs[prog] {
					t.Errorf("link %d of program %d still attached after Close", id, prog)
				}
			}
		})
	}
}

// readUntil reads close records, flushing the kernel's batches as the
// observer's read loop does, until seen says it has what it wanted or the
// deadline passes.
func readUntil(t *testing.T, obs *Observer, rd reader.Reader, deadline time.Time, seen func(*reader.Event) bool) {
	t.Helper()
	var ev reader.Event
	for time.Now().Before(deadline) {
		if err := obs.FlushCloses(); err != nil {
			t.Fatal(err)
		}
		for {
			err := rd.Read(&ev)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if seen(&ev) {
				return
			}
		}
		rd.Wait(100 * time.Millisecond)
	}
}

// checkRecords makes one connection (the client sends 14 bytes, the server
// 5) and checks both close records against what the sockets say.
func checkRecords(t *testing.T, obs *Observer, rd reader.Reader, network, addr string) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	request, reply := []byte("pipeline-check"), []byte("reply")
	served := make(chan *net.TCPAddr, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- nil
			return
		}
		io.ReadFull(c, make([]byte, len(request)))
		c.Write(reply)
		io.Copy(io.Discard, c)
		served <- c.RemoteAddr().(*net.TCPAddr)
		c.Close()
	}()
	c, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	client := c.LocalAddr().(*net.TCPAddr)
	server := ln.Addr().(*net.TCPAddr)
	c.Write(request)
	io.ReadFull(c, make([]byte, len(reply)))
	c.Close()
	if got := <-served; got == nil || got.Port != client.Port {
		t.Fatalf("%s: server saw client %v, want port %d", network, got, client.Port)
	}

	type side struct {
		dir            bpf.TcpobsDirection
		local, remote  *net.TCPAddr
		sent, received int
		seen           bool
	}
	sides := []*side{
		{bpf.TcpobsDirectionDIR_ACTIVE, client, server, len(request), len(reply), false},
		{bpf.TcpobsDirectionDIR_PASSIVE, server, client, len(reply), len(request), false},
	}
	pid := uint32(os.Getpid())
	readUntil(t, obs, rd, time.Now().Add(5*time.Second), func(ev *reader.Event) bool {
		for _, s := range sides {
			st := &ev.State
			if st.Direction != uint8(s.dir) || int(st.Sport) != s.local.Port || int(st.Dport) != s.remote.Port {
				continue
			}
			s.seen = true
			src, dst := recordAddr(st.Family, st.Saddr), recordAddr(st.Family, st.Daddr)
			if !src.Equal(s.local.IP) || !dst.Equal(s.remote.IP) {
				t.Errorf("%s %v: record says %v -> %v, sockets say %v -> %v", network, s.dir, src, dst, s.local.IP, s.remote.IP)
			}
			if ev.BytesSent != uint64(s.sent) || ev.BytesReceived != uint64(s.received) {
				t.Errorf("%s %v: bytes sent/received %d/%d, want %d/%d", network, s.dir, ev.BytesSent, ev.BytesReceived, s.sent, s.received)
			}
			if st.Owner.Pid != pid {
				t.Errorf("%s %v: owner pid %d, want this process %d", network, s.dir, st.Owner.Pid, pid)
			}
		}
		return sides[0].seen && sides[1].seen
	})
	for _, s := range sides {
		if !s.seen {
			t.Errorf("%s: no %v close record for %v -> %v", network, s.dir, s.local, s.remote)
		}
	}
}

func recordAddr(family uint16, b [16]uint8) net.IP {
	if family == 2 {
		return net.IP(b[:4])
	}
	return net.IP(b[:])
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

// TestFailedAttachLeavesNothing makes the last attach fail (the sock_ops
// cgroup is a plain directory) after the tracepoints are attached: Load
// must return a one-line error and detach what it had attached.
func TestFailedAttachLeavesNothing(t *testing.T) {
	privtest.Require(t)
	before := attachedLinks(t)
	obs, err := Load(Options{Ringbuf: true, RingbufBytes: 1 << 20, ConnMapType: ebpf.Hash,
		MaxConnections: 1024, SampleRate: 1, CgroupPath: t.TempDir()})
	if err == nil {
		obs.Close()
		t.Fatal("Load attached sock_ops to a directory that is not a cgroup")
	}
	if msg := err.Error(); !strings.Contains(msg, "attach sock_ops") || strings.Contains(msg, "\n") {
		t.Errorf("error should be one line naming the failed attach, got %q", msg)
	}
	if after := attachedLinks(t); len(after) != len(before) {
		t.Errorf("%d links attached before Load, %d after its failure", len(before), len(after))
	}
}

// TestCloseBatches checks the transport records themselves: batched, a
// burst of closes leaves in records of up to CLOSE_BATCH closes each, and
// FlushCloses sends on what waits in partial batches, so every close of the
// burst arrives exactly once; unbatched, every record carries one close.
// Both transports, since flush_closes writes to either from an interrupt.
func TestCloseBatches(t *testing.T) {
	privtest.Require(t)
	for _, v := range []struct {
		name               string
		ringbuf, unbatched bool
	}{{"ringbuf", true, false}, {"perf", false, false}, {"ringbuf_unbatched", true, true}} {
		t.Run(v.name, func(t *testing.T) {
			obs, err := Load(Options{Ringbuf: v.ringbuf, RingbufBytes: 1 << 22, ConnMapType: ebpf.Hash,
				MaxConnections: 4096, SampleRate: 1, Unbatched: v.unbatched})
			if err != nil {
				t.Fatal(err)
			}
			defer obs.Close()
			next := rawRecords(t, obs, v.ringbuf)

			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() { // closes each connection at once: both ends close
				for c, err := ln.Accept(); err == nil; c, err = ln.Accept() {
					c.Close()
				}
			}()
			server := uint16(ln.Addr().(*net.TCPAddr).Port)
			dial := func(n int) map[uint16]int {
				ports := map[uint16]int{}
				for range n {
					c, err := net.Dial("tcp4", ln.Addr().String())
					if err != nil {
						t.Fatal(err)
					}
					ports[uint16(c.LocalAddr().(*net.TCPAddr).Port)] = 0
					io.Copy(io.Discard, c) // until the server's FIN: both ends close
					c.Close()
				}
				return ports
			}
			// collect counts each connection's close records (client and
			// server side) until all arrived, and the closes per record.
			collect := func(ports map[uint16]int) (perRecord []int) {
				deadline := time.Now().Add(5 * time.Second)
				missing := 2 * len(ports)
				for missing > 0 && time.Now().Before(deadline) {
					if err := obs.FlushCloses(); err != nil {
						t.Fatal(err)
					}
					for {
						evs, ok := next()
						if !ok {
							break
						}
						perRecord = append(perRecord, len(evs))
						for _, ev := range evs {
							st := &ev.State
							p := st.Sport
							if p == server {
								p = st.Dport
							} else if st.Dport != server {
								continue
							}
							if seen, ours := ports[p]; ours {
								ports[p] = seen + 1
								if seen < 2 {
									missing--
								}
							}
						}
					}
					time.Sleep(50 * time.Millisecond)
				}
				for p, seen := range ports {
					if seen != 2 {
						t.Errorf("connection from port %d: %d close records, want 2 (client and server)", p, seen)
					}
				}
				return perRecord
			}

			perRecord := collect(dial(200))
			most := 0
			for _, n := range perRecord {
				most = max(most, n)
			}
			switch {
			case v.unbatched && most != 1:
				t.Errorf("unbatched: a transport record carried %d closes", most)
			case !v.unbatched && most < 2:
				t.Errorf("batched: 400 closes left in %d records of one close each", len(perRecord))
			}
			// A lone connection's two closes sit in partial batches until
			// FlushCloses sends them on.
			collect(dial(1))
		})
	}
}

// rawRecords returns a reader of the transport's records as the kernel
// wrote them: the closes of one batch each (false: none waiting now).
func rawRecords(t *testing.T, obs *Observer, ring bool) func() ([]bpf.TcpobsConnEvent, bool) {
	t.Helper()
	var raw func() ([]byte, bool)
	if ring {
		rd, err := ringbuf.NewReader(obs.Objs.EventsRb)
		read := readNow[ringbuf.Record](t, rd, err)
		raw = func() ([]byte, bool) {
			rec, err := read()
			return rec.RawSample, err == nil
		}
	} else {
		rd, err := perf.NewReader(obs.Objs.EventsPerf, 1<<20)
		read := readNow[perf.Record](t, rd, err)
		raw = func() ([]byte, bool) {
			rec, err := read()
			if err == nil && rec.LostSamples > 0 {
				t.Errorf("perf buffer lost %d records", rec.LostSamples)
			}
			return rec.RawSample, err == nil && rec.LostSamples == 0
		}
	}
	var b bpf.TcpobsCloseBatch
	hdr, size := int(unsafe.Offsetof(b.Ev)), int(unsafe.Sizeof(b.Ev[0]))
	return func() ([]bpf.TcpobsConnEvent, bool) {
		rec, ok := raw()
		if !ok {
			return nil, false
		}
		n := int(binary.LittleEndian.Uint32(rec))
		if n < 1 || n > len(b.Ev) || len(rec) < hdr+n*size {
			t.Fatalf("malformed batch: n=%d in %d bytes", n, len(rec))
		}
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&b)), hdr+n*size), rec)
		return b.Ev[:n], true
	}
}

// deadlineReader is what ringbuf.Reader and perf.Reader have in common.
type deadlineReader[R any] interface {
	SetDeadline(time.Time)
	Read() (R, error)
	Close() error
}

// readNow returns a read of rd that does not wait (the reader is closed at
// the test's end; err is the reader's opening error).
func readNow[R any](t *testing.T, rd deadlineReader[R], err error) func() (R, error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return func() (R, error) {
		rd.SetDeadline(time.Now())
		return rd.Read()
	}
}

// TestAttachedSeesADetachedLink: another process can detach the sock_ops
// link (BPF_LINK_DETACH, as bpftool link detach does) while the observer
// still holds it open; Attached must notice, in the kernel, and name the
// program. After Close nothing is attached.
func TestAttachedSeesADetachedLink(t *testing.T) {
	privtest.Require(t)
	obs, err := Load(Options{Ringbuf: true, RingbufBytes: 1 << 20, ConnMapType: ebpf.Hash,
		MaxConnections: 1024, SampleRate: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	if err := obs.Attached(); err != nil {
		t.Fatalf("just attached: %v", err)
	}
	var detached bool
	for _, a := range obs.links {
		if a.name != "sock_ops" {
			continue
		}
		// By its ID, as another process would: not through our own fd.
		info, err := a.link.Info()
		if err != nil {
			t.Fatal(err)
		}
		other, err := link.NewFromID(info.ID)
		if err != nil {
			t.Fatal(err)
		}
		err = other.Detach()
		other.Close()
		if err != nil {
			t.Fatal(err)
		}
		detached = true
	}
	if !detached {
		t.Fatal("no sock_ops link")
	}
	err = obs.Attached()
	if err == nil || !strings.Contains(err.Error(), "sock_ops") || strings.Contains(err.Error(), "\n") {
		t.Errorf("after the sock_ops link was detached: Attached() = %v, want one line naming sock_ops", err)
	}
	obs.Close()
	if err := obs.Attached(); err == nil {
		t.Error("after Close: Attached() = nil")
	}
}
