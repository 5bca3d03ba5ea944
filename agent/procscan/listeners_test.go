package procscan

import (
	"net"
	"os"
	"testing"
)

// A listener this test opens is found, owned by this process.
func TestFindsOwnListener(t *testing.T) {
	for _, fam := range []struct {
		network, addr string
		family        uint16
	}{{"tcp4", "127.0.0.1:0", 2}, {"tcp6", "[::1]:0", 10}} {
		ln, err := net.Listen(fam.network, fam.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		ls, err := Listeners("/proc", "")
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, l := range ls {
			if l.Port == port && l.Family == fam.family {
				found = true
				if l.PID != uint32(os.Getpid()) {
					t.Errorf("%s listener on %d owned by pid %d, want %d", fam.network, port, l.PID, os.Getpid())
				}
				if l.Comm == "" || l.Netns == 0 {
					t.Errorf("incomplete listener: %+v", l)
				}
			}
		}
		if !found {
			t.Errorf("%s listener on port %d not found among %d", fam.network, port, len(ls))
		}
	}
}
