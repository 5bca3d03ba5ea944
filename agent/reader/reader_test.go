package reader

import (
	"encoding/binary"
	"strings"
	"testing"
	"unsafe"
)

// The offsets of struct conn_event / conn_state in bpf/tcpobs.h as the
// kernel (x86-64 and arm64 alike) lays them out.
func TestEventLayoutMatchesKernel(t *testing.T) {
	var ev Event
	for _, f := range []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(conn_event)", unsafe.Sizeof(ev), 296},
		{"sizeof(conn_state)", unsafe.Sizeof(ev.State), 240},
		{"sk", unsafe.Offsetof(ev.Sk), 0},
		{"end_ns", unsafe.Offsetof(ev.EndNs), 8},
		{"bytes_sent", unsafe.Offsetof(ev.BytesSent), 16},
		{"bytes_received", unsafe.Offsetof(ev.BytesReceived), 24},
		{"total_retrans", unsafe.Offsetof(ev.TotalRetrans), 32},
		{"srtt_us", unsafe.Offsetof(ev.SrttUs), 36},
		{"rttvar_us", unsafe.Offsetof(ev.RttvarUs), 40},
		{"snd_cwnd", unsafe.Offsetof(ev.SndCwnd), 44},
		{"old_state", unsafe.Offsetof(ev.OldState), 48},
		{"state", unsafe.Offsetof(ev.State), 56},
		{"state.owner", unsafe.Offsetof(ev.State.Owner), 40},
		{"state.owner.comm", unsafe.Offsetof(ev.State.Owner.Comm), 12},
		{"state.retransmits", unsafe.Offsetof(ev.State.Retransmits), 72},
		{"state.flags", unsafe.Offsetof(ev.State.Flags), 92},
		{"state.rtt_sum_us", unsafe.Offsetof(ev.State.RttSumUs), 96},
		{"state.family", unsafe.Offsetof(ev.State.Family), 104},
		{"state.direction", unsafe.Offsetof(ev.State.Direction), 110},
		{"state.saddr", unsafe.Offsetof(ev.State.Saddr), 112},
		{"state.daddr", unsafe.Offsetof(ev.State.Daddr), 128},
		{"state.rtt_hist", unsafe.Offsetof(ev.State.RttHist), 144},
	} {
		if f.got != f.want {
			t.Errorf("%s = %d, want %d", f.name, f.got, f.want)
		}
	}
}

// rawEvent writes a record byte by byte at the kernel's offsets.
func rawEvent(extra int) []byte {
	b := make([]byte, eventSize+extra)
	le := binary.LittleEndian
	le.PutUint64(b[0:], 0xffff888012345678) // sk
	le.PutUint64(b[8:], 5_000_000_000)      // end_ns
	le.PutUint64(b[16:], 123456789)         // bytes_sent
	le.PutUint64(b[24:], 987654321)         // bytes_received
	le.PutUint32(b[32:], 7)                 // total_retrans
	le.PutUint32(b[36:], 1500)              // srtt_us
	le.PutUint32(b[40:], 250)               // rttvar_us
	le.PutUint32(b[44:], 10)                // snd_cwnd
	le.PutUint32(b[48:], 2)                 // old_state
	s := b[56:]
	le.PutUint64(s[0:], 1_000_000_000) // start_ns
	le.PutUint64(s[40:], 4242)         // owner.cgroup_id
	le.PutUint32(s[48:], 31337)        // owner.pid
	copy(s[52:68], "psql")             // owner.comm
	le.PutUint32(s[88:], 12)           // rtt_samples
	le.PutUint32(s[92:], 0b101)        // flags
	le.PutUint16(s[104:], 10)          // family
	le.PutUint16(s[106:], 40000)       // sport
	le.PutUint16(s[108:], 443)         // dport
	s[110] = 2                         // direction
	s[112], s[127] = 0xfd, 1           // saddr fd00::1
	s[128], s[143] = 0xfd, 2           // daddr fd00::2
	le.PutUint32(s[144+4*23:], 99)     // rtt_hist[23]
	return b
}

func TestDecodeFieldsAtKernelOffsets(t *testing.T) {
	var ev Event
	if err := decode(rawEvent(8), &ev); err != nil { // ring buffer records may carry padding
		t.Fatal(err)
	}
	s := &ev.State
	if ev.Sk != 0xffff888012345678 || ev.EndNs != 5_000_000_000 || ev.BytesSent != 123456789 || ev.BytesReceived != 987654321 ||
		ev.TotalRetrans != 7 || ev.SrttUs != 1500 || ev.RttvarUs != 250 || ev.SndCwnd != 10 || ev.OldState != 2 {
		t.Errorf("event header %+v", ev)
	}
	var comm [16]int8
	for i, c := range "psql" {
		comm[i] = int8(c)
	}
	if s.StartNs != 1_000_000_000 || s.Owner.CgroupId != 4242 || s.Owner.Pid != 31337 || s.Owner.Comm != comm ||
		s.RttSamples != 12 || s.Flags != 0b101 || s.Family != 10 || s.Sport != 40000 || s.Dport != 443 || s.Direction != 2 ||
		s.Saddr[0] != 0xfd || s.Saddr[15] != 1 || s.Daddr[0] != 0xfd || s.Daddr[15] != 2 || s.RttHist[23] != 99 {
		t.Errorf("state %+v", *s)
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	var in Event
	in.Sk, in.EndNs, in.BytesSent, in.BytesReceived = 1, 2, 3, 4
	in.TotalRetrans, in.SrttUs, in.RttvarUs, in.SndCwnd, in.OldState = 5, 6, 7, 8, 9
	in.State.StartNs, in.State.UpdatedNs, in.State.AckedBase, in.State.Sent = 10, 11, 12, 13
	in.State.Owner.Pid, in.State.Owner.CgroupId = 14, 15
	in.State.RttSumUs, in.State.Family, in.State.Sport, in.State.Dport = 16, 2, 17, 18
	for i := range in.State.RttHist {
		in.State.RttHist[i] = uint32(100 + i)
	}
	for i := range in.State.Saddr {
		in.State.Saddr[i], in.State.Daddr[i] = byte(i), byte(255-i)
	}
	raw := append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&in)), eventSize)...)
	out := Event{Sk: 999} // decode must overwrite everything
	out.State.RttHist[0] = 42
	if err := decode(raw, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Errorf("round trip changed the event\n got %+v\nwant %+v", out, in)
	}
}

func TestDecodeRejectsShortRecords(t *testing.T) {
	for _, n := range []int{0, 1, eventSize - 1} {
		ev := Event{Sk: 77}
		err := decode(make([]byte, n), &ev)
		if err == nil {
			t.Errorf("%d-byte record accepted", n)
			continue
		}
		if !strings.Contains(err.Error(), "short record") {
			t.Errorf("%d bytes: error %q does not say the record is short", n, err)
		}
		if ev.Sk != 77 {
			t.Errorf("%d bytes: the event was overwritten on error", n)
		}
	}
	if err := decode(make([]byte, eventSize), new(Event)); err != nil {
		t.Errorf("exact-size record rejected: %v", err)
	}
}

// rawBatch is a transport record: close_batch's header, then the records.
func rawBatch(n int, evs ...[]byte) []byte {
	b := make([]byte, batchHeader)
	binary.LittleEndian.PutUint32(b, uint32(n))
	binary.LittleEndian.PutUint32(b[4:], 1) // busy: set while the kernel sent it
	for _, ev := range evs {
		b = append(b, ev...)
	}
	return b
}

func TestBatchHeaderMatchesKernel(t *testing.T) {
	if batchHeader != 8 || maxBatch != 8 {
		t.Errorf("close_batch: records at offset %d, %d of them; tcpobs.h has 8 and CLOSE_BATCH 8", batchHeader, maxBatch)
	}
}

// A batch yields its records in order and nothing after them, even where the
// transport padded the record.
func TestBatchYieldsEachRecordOnce(t *testing.T) {
	a, b, c := rawEvent(0), rawEvent(0), rawEvent(0)
	binary.LittleEndian.PutUint64(b, 2)
	binary.LittleEndian.PutUint64(c, 3)
	var cur batch
	if err := cur.load(append(rawBatch(2, a, b), c...)); err != nil { // c: past n, ignored
		t.Fatal(err)
	}
	var got []uint64
	var ev Event
	for cur.next(&ev) {
		got = append(got, ev.Sk)
	}
	if len(got) != 2 || got[0] != 0xffff888012345678 || got[1] != 2 {
		t.Errorf("batch of 2 yielded sockets %x", got)
	}
}

func TestBatchRejectsMalformedRecords(t *testing.T) {
	ev := rawEvent(0)
	for name, raw := range map[string][]byte{
		"no header":        make([]byte, batchHeader-1),
		"empty batch":      rawBatch(0, ev),
		"n past the array": rawBatch(maxBatch+1, ev),
		"short of n":       rawBatch(2, ev),
		"torn record":      rawBatch(1, ev[:eventSize-1]),
	} {
		var cur batch
		if err := cur.load(raw); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if cur.next(new(Event)) {
			t.Errorf("%s: yielded a record after the error", name)
		}
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	raw := rawEvent(0)
	var ev Event
	if n := testing.AllocsPerRun(1000, func() {
		if err := decode(raw, &ev); err != nil {
			panic(err)
		}
	}); n != 0 {
		t.Errorf("decode allocates %.1f times per record, want 0", n)
	}
}

func TestBatchDoesNotAllocate(t *testing.T) {
	raw := rawBatch(3, rawEvent(0), rawEvent(0), rawEvent(0))
	var cur batch
	var ev Event
	if n := testing.AllocsPerRun(1000, func() {
		if err := cur.load(raw); err != nil {
			panic(err)
		}
		for cur.next(&ev) {
		}
	}); n != 0 {
		t.Errorf("walking a batch allocates %.1f times, want 0", n)
	}
}

func BenchmarkDecode(b *testing.B) {
	raw := rawEvent(0)
	var ev Event
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := decode(raw, &ev); err != nil {
			b.Fatal(err)
		}
	}
}
