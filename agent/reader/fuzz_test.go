package reader

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// Fuzz targets for the bytes the kernel hands over: close records and the
// batches (struct close_batch) that carry them. Seed corpora are in
// testdata/fuzz/<target>/ as well; `make fuzz-short` runs each briefly.

// ownerPad is where struct owner's 4 trailing padding bytes sit in a
// record: the one part of the layout no field carries.
const ownerPad = 56 + 40 + 28

// encodeEvent writes ev field by field at the kernel's offsets (tcpobs.h),
// independently of decode's memory copy: the formatter the round trip
// checks decode against.
func encodeEvent(ev *Event) []byte {
	b := make([]byte, eventSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], ev.Sk)
	le.PutUint64(b[8:], ev.EndNs)
	le.PutUint64(b[16:], ev.BytesSent)
	le.PutUint64(b[24:], ev.BytesReceived)
	le.PutUint32(b[32:], ev.TotalRetrans)
	le.PutUint32(b[36:], ev.SrttUs)
	le.PutUint32(b[40:], ev.RttvarUs)
	le.PutUint32(b[44:], ev.SndCwnd)
	le.PutUint32(b[48:], ev.OldState)
	le.PutUint32(b[52:], ev.Pad)
	s, st := b[56:], &ev.State
	le.PutUint64(s[0:], st.StartNs)
	le.PutUint64(s[8:], st.UpdatedNs)
	le.PutUint64(s[16:], st.AckedBase)
	le.PutUint64(s[24:], st.Sent)
	le.PutUint64(s[32:], st.BytesReceived)
	le.PutUint64(s[40:], st.Owner.CgroupId)
	le.PutUint32(s[48:], st.Owner.Pid)
	for i, c := range st.Owner.Comm {
		s[52+i] = byte(c)
	}
	le.PutUint32(s[72:], st.Retransmits)
	le.PutUint32(s[76:], st.TotalRetrans)
	le.PutUint32(s[80:], st.SrttUs)
	le.PutUint32(s[84:], st.SndCwnd)
	le.PutUint32(s[88:], st.RttSamples)
	le.PutUint32(s[92:], st.Flags)
	le.PutUint64(s[96:], st.RttSumUs)
	le.PutUint16(s[104:], st.Family)
	le.PutUint16(s[106:], st.Sport)
	le.PutUint16(s[108:], st.Dport)
	s[110], s[111] = st.Direction, st.Pad
	copy(s[112:128], st.Saddr[:])
	copy(s[128:144], st.Daddr[:])
	for i, v := range st.RttHist {
		le.PutUint32(s[144+4*i:], v)
	}
	return b
}

// sameBytes compares a record with its re-encoding, but for the padding.
func sameBytes(raw, enc []byte) bool {
	a := bytes.Clone(raw[:eventSize])
	clear(a[ownerPad : ownerPad+4])
	return bytes.Equal(a, enc)
}

func FuzzDecode(f *testing.F) {
	f.Add(rawEvent(0))
	f.Add(rawEvent(8)) // ring buffer records carry padding to 8 bytes
	f.Add(make([]byte, eventSize))
	f.Add(bytes.Repeat([]byte{0xff}, eventSize))
	f.Add(rawEvent(0)[:eventSize-1])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev := Event{Sk: 0x5a5a}
		err := decode(raw, &ev)
		if len(raw) < eventSize {
			if err == nil {
				t.Fatalf("%d-byte record accepted (want %d)", len(raw), eventSize)
			}
			if ev.Sk != 0x5a5a {
				t.Errorf("a rejected record overwrote the event")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%d-byte record rejected: %v", len(raw), err)
		}
		if enc := encodeEvent(&ev); !sameBytes(raw, enc) {
			t.Errorf("decoded record re-encodes differently:\n in %x\nout %x", raw[:eventSize], enc)
		}
	})
}

func FuzzBatch(f *testing.F) {
	a, b := rawEvent(0), rawEvent(0)
	b[0] = 0x77
	f.Add(rawBatch(1, a))
	f.Add(rawBatch(2, a, b))
	f.Add(append(rawBatch(1, a, b), 0, 0, 0, 0)) // a record past n, and padding: ignored
	f.Add(rawBatch(maxBatch, a, b, a, b, a, b, a, b))
	f.Add(rawBatch(0, a))
	f.Add(rawBatch(9, a))
	f.Add(rawBatch(3, a, b)) // claims more than it holds
	f.Add(rawBatch(-1))      // n = 0xffffffff
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var cur batch
		err := cur.load(raw)
		var ev Event
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
			if cur.next(&ev) {
				t.Errorf("a rejected batch yielded a record")
			}
			return
		}
		n := int(binary.LittleEndian.Uint32(raw))
		if n < 1 || n > maxBatch || len(raw) < batchHeader+n*eventSize {
			t.Fatalf("accepted a batch claiming %d records in %d bytes", n, len(raw))
		}
		for i := 0; i < n; i++ {
			if !cur.next(&ev) {
				t.Fatalf("batch of %d ended after %d records", n, i)
			}
			rec := raw[batchHeader+i*eventSize:]
			if enc := encodeEvent(&ev); !sameBytes(rec, enc) {
				t.Errorf("record %d of %d is not the bytes at its offset:\n in %x\nout %x", i, n, rec[:eventSize], enc)
			}
		}
		if cur.next(&ev) {
			t.Errorf("batch of %d yielded a record past its count", n)
		}
	})
}
