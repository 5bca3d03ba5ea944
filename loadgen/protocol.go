package loadgen

import (
	"encoding/binary"
	"fmt"
)

// Wire protocol. Every connection starts with an 8-byte header from the client:
//
//	offset 0  2 bytes  magic "LG"
//	offset 2  1 byte   version (1)
//	offset 3  1 byte   mode: 's' stream, 'r' rr, 'c' crr
//	offset 4  4 bytes  size, big endian: the request (= response) size for rr/crr;
//	                   the client's write size for stream (informational)
//
// stream: the client then sends bytes until it closes; the server reads and
// discards them and never writes.
// rr, crr: the client sends size bytes, the server answers with size bytes,
// repeatedly until the client closes (crr: after one exchange). The client
// closes first, so TIME_WAIT lands on the client, as with netperf's TCP_CRR.
// Anything else (wrong magic, version or mode, size 0 or above MaxSize for
// rr/crr) makes the server close that connection and keep serving.
const (
	headerLen = 8
	version   = 1
	// MaxSize bounds --size: the server allocates a buffer of this size per
	// rr/crr connection, so a garbage header cannot make it allocate more.
	MaxSize = 16 << 20
)

// Mode is a workload: stream, rr or crr.
type Mode string

// The three workloads.
const (
	ModeStream Mode = "stream"
	ModeRR     Mode = "rr"
	ModeCRR    Mode = "crr"
)

func (m Mode) wire() (byte, error) {
	switch m {
	case ModeStream:
		return 's', nil
	case ModeRR:
		return 'r', nil
	case ModeCRR:
		return 'c', nil
	}
	return 0, fmt.Errorf("unknown mode %q (want stream, rr or crr)", string(m))
}

func modeFromWire(b byte) (Mode, bool) {
	switch b {
	case 's':
		return ModeStream, true
	case 'r':
		return ModeRR, true
	case 'c':
		return ModeCRR, true
	}
	return "", false
}

// putHeader writes the header for mode and size into b[:headerLen].
func putHeader(b []byte, m Mode, size int) error {
	w, err := m.wire()
	if err != nil {
		return err
	}
	b[0], b[1], b[2], b[3] = 'L', 'G', version, w
	binary.BigEndian.PutUint32(b[4:8], uint32(size))
	return nil
}

// parseHeader validates a header received by the server.
func parseHeader(b []byte) (Mode, int, error) {
	if b[0] != 'L' || b[1] != 'G' {
		return "", 0, fmt.Errorf("bad magic %q", b[:2])
	}
	if b[2] != version {
		return "", 0, fmt.Errorf("unsupported protocol version %d", b[2])
	}
	m, ok := modeFromWire(b[3])
	if !ok {
		return "", 0, fmt.Errorf("unknown mode byte %#x", b[3])
	}
	size := int(binary.BigEndian.Uint32(b[4:8]))
	if m != ModeStream && (size < 1 || size > MaxSize) {
		return "", 0, fmt.Errorf("size %d out of range 1..%d", size, MaxSize)
	}
	return m, size, nil
}
