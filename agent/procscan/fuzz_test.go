package procscan

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// Fuzz targets for /proc/net/tcp{,6}, the one /proc table this package
// parses (the rest it reads are numbers through strconv and links). Seed
// corpora are also in testdata/fuzz/<target>/; `make fuzz-short` runs each.

const (
	tcpHeader = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	tcp4Line  = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 40117 1 0000000000000000 100 0 0 10 0\n"
	tcp4Estab = "   1: 0100007F:A2C4 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 40210 1 0000000000000000 20 4 30 10 -1\n"
	tcp6Line  = "   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19642 1 0000000000000000 100 0 0 10 0\n"
)

// kernelLine formats one socket as the kernel's tcp4_seq_show and
// tcp6_seq_show do.
func kernelLine(sl int, v6 bool, port uint16, state uint8, inode uint64) string {
	addr := "0100007F"
	if v6 {
		addr = "00000000000000000000000001000000"
	}
	zero := strings.Repeat("0", len(addr))
	return fmt.Sprintf("%4d: %s:%04X %s:%04X %02X %08X:%08X %02X:%08X %08X %5d %8d %d %d %016x %d %d %d %d %d\n",
		sl, addr, port, zero, 0, state, 0, 0, 0, 0, 0, 0, 0, inode, 1, 0, 100, 0, 0, 10, 0)
}

type listening struct {
	inode uint64
	port  uint16
}

func FuzzParseListening(f *testing.F) {
	f.Add(tcpHeader + tcp4Line + tcp4Estab)
	f.Add(tcpHeader + tcp6Line)
	f.Add(tcpHeader)
	f.Add("")
	f.Add(tcp4Line) // no header: the first line is skipped as one
	f.Add(tcpHeader + "   0: 0100007F1F90 00000000:0000 0A 0 0 0 0 0 0 1\n")
	f.Add(tcpHeader + "   0: 0100007F:FFFFF 00000000:0000 0A 0 0 0 0 0 0 1\n")
	f.Fuzz(func(t *testing.T, content string) {
		var got []listening
		parseListeningFrom(strings.NewReader(content), func(inode uint64, port uint16) {
			got = append(got, listening{inode, port})
		})
		lines := strings.Count(content, "\n") + 1
		if len(got) > lines-1 {
			t.Fatalf("%d listeners from %d lines (one a header)", len(got), lines)
		}
		upper := strings.ToUpper(content)
		for _, l := range got {
			// Each one is read off the input: its port in hex, its inode in decimal.
			if !strings.Contains(upper, fmt.Sprintf("%X", l.port)) || !strings.Contains(content, strconv.FormatUint(l.inode, 10)) {
				t.Errorf("listener %+v is not in the input %q", l, content)
			}
		}
	})
}

func FuzzListeningRoundTrip(f *testing.F) {
	f.Add(false, uint16(8080), uint8(0x0A), uint64(40117))
	f.Add(true, uint16(22), uint8(0x0A), uint64(19642))
	f.Add(false, uint16(41668), uint8(0x01), uint64(40210))
	f.Add(true, uint16(0xffff), uint8(0x0A), uint64(1<<64-1))
	f.Add(false, uint16(0), uint8(0x0A), uint64(0))
	f.Fuzz(func(t *testing.T, v6 bool, port uint16, state uint8, inode uint64) {
		table := tcpHeader + kernelLine(0, v6, port, state, inode) + kernelLine(1, v6, port^1, 0x06, inode+1)
		var got []listening
		if !parseListeningFrom(strings.NewReader(table), func(inode uint64, port uint16) {
			got = append(got, listening{inode, port})
		}) {
			t.Fatalf("table not read through:\n%s", table)
		}
		var want []listening
		if state == 0x0A {
			want = []listening{{inode, port}}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("table\n%s gives %v, want %v", table, got, want)
		}
	})
}
