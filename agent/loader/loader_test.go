package loader

import (
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
	"github.com/cilium/ebpf/ringbuf"

	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
)

// TestPipeline proves the whole BPF pipeline on the running kernel, for both
// variants of the lifecycle program: the committed object loads, attaches,
// sees the test's own IPv4 and IPv6 connections (tuple, owner and exact
// payload of both sockets in their close records), and leaves nothing
// attached after Close.
func TestPipeline(t *testing.T) {
	privtest.Require(t)
	for _, raw := range []bool{false, true} {
		name := map[bool]string{false: "tp_btf", true: "raw_tracepoint"}[raw]
		t.Run(name, func(t *testing.T) {
			before := attachedLinks(t)
			obs, err := Load(Options{Ringbuf: true, RingbufBytes: 1 << 20, ConnMapType: ebpf.Hash,
				MaxConnections: 1024, SampleRate: 1, RawTracepoint: raw})
			if err != nil {
				t.Fatal(err)
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
			rd, err := ringbuf.NewReader(obs.Objs.EventsRb)
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			for _, fam := range []struct{ net, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
				checkRecords(t, rd, fam.net, fam.addr)
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

// checkRecords makes one connection (the client sends 14 bytes, the server
// 5) and checks both close records against what the sockets say.
func checkRecords(t *testing.T, rd *ringbuf.Reader, network, addr string) {
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
	deadline := time.Now().Add(5 * time.Second)
	for (!sides[0].seen || !sides[1].seen) && time.Now().Before(deadline) {
		rd.SetDeadline(time.Now().Add(200 * time.Millisecond))
		rec, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		ev := (*bpf.TcpobsConnEvent)(unsafe.Pointer(&rec.RawSample[0]))
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
	}
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
