package loadgen

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
)

// TestSourceAcrossNamespaces runs the client from a chosen source address on
// one end of a veth pair against a server inside a network namespace on the
// other end: the set-up the bench uses to keep traffic off loopback.
func TestSourceAcrossNamespaces(t *testing.T) {
	privtest.Require(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("needs iproute2's ip: apt-get install iproute2")
	}
	id := os.Getpid() % 100000
	ns, host, peer := fmt.Sprintf("lgt%d", id), fmt.Sprintf("lgh%d", id), fmt.Sprintf("lgn%d", id)
	// A private /30 per process, so parallel test runs do not collide.
	a, b := fmt.Sprintf("10.%d.%d.1", 200+id%50, id%250), fmt.Sprintf("10.%d.%d.2", 200+id%50, id%250)
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	sh("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() }) // removes the veth pair too
	sh("link", "add", host, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	sh("link", "set", peer, "netns", ns)
	sh("addr", "add", a+"/30", "dev", host)
	sh("link", "set", host, "up")
	sh("-n", ns, "addr", "add", b+"/30", "dev", peer)
	sh("-n", ns, "link", "set", peer, "up")
	sh("-n", ns, "link", "set", "lo", "up")

	s := listenInNetns(t, ns, b+":0")
	go s.Serve()
	t.Cleanup(func() { s.Close() })

	var res Result
	for try := 0; ; try++ { // the veth may take a moment to pass traffic
		var err error
		res, err = runOnce(Config{Mode: ModeCRR, Target: s.Addr().String(), Source: a,
			Duration: 300 * time.Millisecond, Warmup: -1, Concurrency: 2})
		if err == nil || try == 20 {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := settled(t, s, res.Ops+1)
	if res.Errors != 0 || res.Ops == 0 || res.Ops != st.Ops {
		t.Fatalf("client %d ops (%d errors: %s), server %d", res.Ops, res.Errors, res.FirstError, st.Ops)
	}
}

// listenInNetns opens the server's socket inside network namespace ns: a socket
// belongs to the namespace of the thread that created it, and keeps it.
func listenInNetns(t *testing.T, ns, addr string) *Server {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatalf("setns %s: %v", ns, err)
	}
	s, lerr := Listen(addr)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		panic("cannot return to the original network namespace: " + err.Error())
	}
	if lerr != nil {
		t.Fatal(lerr)
	}
	return s
}
