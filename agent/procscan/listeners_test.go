package procscan

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
)

// The helper process for TestListenerOfThreadInOtherNetns: main runs on
// the leader thread (locked in init), which listens in this namespace and
// then moves itself into a new one.
func init() {
	if os.Getenv("PROCSCAN_HELPER") == "1" {
		runtime.LockOSThread()
	}
}

func TestMain(m *testing.M) {
	if os.Getenv("PROCSCAN_HELPER") == "1" {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		bufio.NewReader(os.Stdin).ReadString('\n') // until the test is done
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A socket belongs to the namespace it was created in. When the process's
// leader thread has since moved to another namespace (here: unshare after
// listen; in Go tests, a netns helper that ran on the main thread), its
// /proc/<pid>/ns/net and net/tcp show the other namespace, and the
// listener must still be found, in its own namespace.
func TestListenerOfThreadInOtherNetns(t *testing.T) {
	privtest.Require(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PROCSCAN_HELPER=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	port, perr := strconv.Atoi(line[:max(len(line)-1, 0)])
	if err != nil || perr != nil {
		t.Fatalf("helper: %q %v", line, err)
	}
	var here, leader syscall.Stat_t
	if err := syscall.Stat("/proc/thread-self/ns/net", &here); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), &leader); err != nil {
		t.Fatal(err)
	}
	if here.Ino == leader.Ino {
		t.Fatal("helper's leader thread did not leave this namespace")
	}
	ls, err := Listeners("/proc", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.PID == uint32(cmd.Process.Pid) && l.Port == uint16(port) {
			if l.Netns != uint32(here.Ino) {
				t.Errorf("listener on %d in netns %d, want %d (where it was created)", port, l.Netns, here.Ino)
			}
			return
		}
	}
	t.Errorf("listener on port %d of pid %d not found among %d", port, cmd.Process.Pid, len(ls))
}

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
