package probe

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/internal/mounts"
)

// Cgroup is a cgroup v2 directory of bench's own that the load runs in, so
// its CPU time (system calls, the network stack, the BPF programs run in
// its context) is read from one counter: whatever else the machine does
// stays out of it, unlike the machine's busy time.
type Cgroup struct {
	Path string
	dir  *os.File
}

// NewCgroup makes a child of the cgroup v2 root named name.
func NewCgroup(name string) (*Cgroup, error) {
	root, err := mounts.Cgroup2()
	if err != nil {
		return nil, err
	}
	p := filepath.Join(root, name)
	if err := os.Mkdir(p, 0o755); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("make cgroup %s: %w (run as root)", p, err)
	}
	d, err := os.Open(p)
	if err != nil {
		os.Remove(p)
		return nil, err
	}
	return &Cgroup{Path: p, dir: d}, nil
}

// FD is the directory's descriptor, for starting a process inside it
// (SysProcAttr.UseCgroupFD).
func (g *Cgroup) FD() int { return int(g.dir.Fd()) }

// Usage is the CPU time the cgroup's processes have used, ns: in all, and
// in the kernel (system calls, the network stack, the BPF programs run in
// their context), which an observer's hooks add to and the load's own user
// space (a Go runtime spinning while partly idle) does not move.
func (g *Cgroup) Usage() (total, system int64) {
	data, err := os.ReadFile(filepath.Join(g.Path, "cpu.stat"))
	if err != nil {
		return 0, 0
	}
	return parseUsage(data)
}

func parseUsage(data []byte) (total, system int64) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		// unsigned microseconds; in ns, past math.MaxInt64 stays there
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		ns := int64(min(n, math.MaxInt64/1000)) * 1000
		switch k {
		case "usage_usec":
			total = ns
		case "system_usec":
			system = ns
		}
	}
	return total, system
}

// Close removes the cgroup once its processes have gone.
func (g *Cgroup) Close() error {
	g.dir.Close()
	var err error
	for i := 0; i < 50; i++ { // a process that just exited leaves a moment later
		if err = os.Remove(g.Path); err == nil || os.IsNotExist(err) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// MachineBusyNs is the non-idle time of every CPU since boot, ns, from the
// first line of /proc/stat (user, nice, system, irq, softirq, steal).
func MachineBusyNs() int64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	return parseBusy(data)
}

func parseBusy(data []byte) int64 {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	// unsigned ticks, summed and scaled without passing math.MaxInt64
	const maxTicks = math.MaxInt64 / (int64(time.Second) / clockTick)
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, _ := strconv.ParseUint(f[i], 10, 64)
		ticks += int64(min(n, uint64(maxTicks-ticks)))
	}
	return ticks * (int64(time.Second) / clockTick)
}

// Into makes cmd start inside g (clone3 into the cgroup: no moment
// outside it), and returns it.
func (g *Cgroup) Into(cmd *exec.Cmd) *exec.Cmd {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, g.FD()
	return cmd
}
