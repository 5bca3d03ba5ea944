// Package nettest builds real network fixtures for privileged tests: a
// network namespace joined to the host by a veth pair, packet loss with
// nftables, and the kernel's own tcp_info for a socket.
package nettest

import (
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Peer is a namespace reachable from the host over a veth pair.
type Peer struct {
	NS, HostIf     string
	HostIP, PeerIP net.IP
}

var seq atomic.Uint32

func run(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// NewPeer creates namespace + veth (10.231.N.1 on the host, .2 inside),
// removed at cleanup.
func NewPeer(t testing.TB) *Peer {
	t.Helper()
	n := seq.Add(1)%200 + 1
	id := fmt.Sprintf("eno%d_%d", unix.Getpid()%10000, n)
	p := &Peer{NS: id, HostIf: "veh" + id[3:], HostIP: net.IPv4(10, 231, byte(n), 1).To4(), PeerIP: net.IPv4(10, 231, byte(n), 2).To4()}
	peerIf := "vep" + id[3:]
	run(t, "ip", "netns", "add", p.NS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", p.NS).Run() })
	run(t, "ip", "link", "add", p.HostIf, "type", "veth", "peer", "name", peerIf)
	t.Cleanup(func() { exec.Command("ip", "link", "del", p.HostIf).Run() })
	run(t, "ip", "link", "set", peerIf, "netns", p.NS)
	run(t, "ip", "addr", "add", p.HostIP.String()+"/24", "dev", p.HostIf)
	run(t, "ip", "link", "set", p.HostIf, "up")
	run(t, "ip", "-n", p.NS, "addr", "add", p.PeerIP.String()+"/24", "dev", peerIf)
	run(t, "ip", "-n", p.NS, "link", "set", peerIf, "up")
	run(t, "ip", "-n", p.NS, "link", "set", "lo", "up")
	return p
}

// Listen opens a TCP listener inside the namespace.
func (p *Peer) Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The thread that enters the namespace is never given back to the
		// scheduler: it exits with this goroutine.
		runtime.LockOSThread()
		fd, e := unix.Open("/run/netns/"+p.NS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if e != nil {
			err = e
			return
		}
		defer unix.Close(fd)
		if err = unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return
		}
		ln, err = net.Listen("tcp4", addr)
	}()
	<-done
	if err != nil {
		t.Fatalf("listen in netns %s: %v", p.NS, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// DropFromHost drops pct% of the packets of at least minLen bytes that
// arrive in the namespace from the host, with nftables inside the namespace.
// The drop must happen after the sender's stack has sent the segment (a
// drop in the sender's own output path is reported back to TCP, which then
// sends again without counting a retransmission).
func (p *Peer) DropFromHost(t testing.TB, pct, minLen int) {
	t.Helper()
	draw := fmt.Sprintf("numgen random mod 100 < %d ", pct)
	if pct >= 100 {
		draw = "" // nft refuses "< 100" on a mod 100 draw
	}
	rules := fmt.Sprintf(`table inet enotest {
	chain in {
		type filter hook input priority 0; policy accept;
		ip saddr %s meta length >= %d %scounter drop
	}
}
`, p.HostIP, minLen, draw)
	cmd := exec.Command("ip", "netns", "exec", p.NS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s (apt-get install nftables)", err, out)
	}
}

// TCPInfo is the kernel's own view of a socket (getsockopt TCP_INFO).
func TCPInfo(c net.Conn) (*unix.TCPInfo, error) {
	scc, ok := c.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%T has no file descriptor", c)
	}
	sc, err := scc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var info *unix.TCPInfo
	var ierr error
	err = sc.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if err != nil {
		return nil, err
	}
	return info, ierr
}
