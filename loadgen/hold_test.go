package loadgen

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// establishedTo counts the established TCP sockets with port at either end,
// from the kernel's own table.
func establishedTo(t *testing.T, port string) int {
	t.Helper()
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			// local_address rem_address st: 01 is ESTABLISHED
			if len(fs) > 3 && fs[3] == "01" && (strings.HasSuffix(fs[1], ":"+port) || strings.HasSuffix(fs[2], ":"+port)) {
				n++
			}
		}
	}
	return n
}

func TestHoldKeepsConnectionsAndTrickles(t *testing.T) {
	for _, ip := range []string{"127.0.0.1", "::1"} {
		t.Run(ip, func(t *testing.T) {
			h, err := OpenHold(HoldConfig{Conns: 300, Listen: ip, Trickle: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			port := listenerPortHex(t, h)
			// Both ends of every connection, as the kernel counts them.
			if got := establishedTo(t, port); got != 600 {
				t.Fatalf("kernel lists %d established sockets on the holder's port, want 600", got)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 550*time.Millisecond)
			defer cancel()
			st, err := h.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// 300 connections x one byte per 100 ms for 550 ms: about 1650.
			if st.BytesSent < 1200 || st.BytesSent > 1800 {
				t.Errorf("trickled %d bytes in 550 ms, want about 1650", st.BytesSent)
			}
			if st.BytesReceived != st.BytesSent {
				t.Errorf("received %d of %d bytes trickled", st.BytesReceived, st.BytesSent)
			}
			if st.HeldSec < 0.5 || st.Conns != 300 {
				t.Errorf("stats %+v: want 300 connections held at least 0.5 s", st)
			}
		})
	}
}

func TestHoldRefusesMoreThanTheFileLimit(t *testing.T) {
	_, err := OpenHold(HoldConfig{Conns: 1 << 30, Listen: "127.0.0.1"})
	if err == nil || !strings.Contains(err.Error(), "--per-process") {
		t.Fatalf("err = %v, want one naming the per-process limit and --per-process", err)
	}
	if _, err := OpenHold(HoldConfig{Conns: 1, Listen: "127.0.0.1", Source: "::1"}); err == nil {
		t.Fatal("mixed families accepted")
	}
}

func listenerPortHex(t *testing.T, h *Holder) string {
	t.Helper()
	p := h.Port()
	if p == 0 {
		t.Fatal("holder has no port")
	}
	return fmt.Sprintf("%04X", p)
}
