// Package probe reads what an observer costs from outside it: CPU and
// memory from /proc, its BPF programs' kernel run-time statistics, its maps'
// memory, and its own Prometheus metrics. Nothing here needs the observer's
// cooperation except the metrics scrape, so any observer (bpftrace, a peer
// agent) can be measured the same way.
package probe

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// clockTick is USER_HZ, the unit of utime/stime in /proc/<pid>/stat; it is
// 100 on every Linux architecture Go supports.
const clockTick = 100

// Tree returns pid and all its descendants that are alive now.
func Tree(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(p); err == nil {
			children[st.ppid] = append(children[st.ppid], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

type procStat struct {
	ppid         int
	utime, stime int64
}

func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	st, err := parseStat(data)
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return st, nil
}

// parseStat reads the fields of /proc/<pid>/stat that Tree and CPUNs use.
func parseStat(data []byte) (procStat, error) {
	// the command name may hold spaces and parentheses: fields start after the last ')'
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("unexpected format")
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("too few fields")
	}
	// The kernel writes these unsigned: a sign is not /proc/<pid>/stat.
	ppid, err1 := strconv.ParseUint(f[1], 10, 31)
	utime, err2 := strconv.ParseUint(f[11], 10, 63)
	stime, err3 := strconv.ParseUint(f[12], 10, 63)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, fmt.Errorf("bad ppid, utime or stime: %s", strings.Join(strings.Fields(err.Error()), " "))
	}
	return procStat{ppid: int(ppid), utime: int64(utime), stime: int64(stime)}, nil
}

// CPUNs is the CPU time the processes have used, in ns: from each process's
// CPU-time clock (the scheduler's own nanosecond account, threads that
// exited included, up to date even for a thread running now), or from
// utime+stime (10 ms ticks, sampled at the tick) where that clock cannot be
// read. A half-second window of an observer at rest holds less than a tick.
func CPUNs(pids []int) int64 {
	var ns int64
	for _, p := range pids {
		if n, err := processCPUNs(p); err == nil {
			ns += n
		} else if st, err := readStat(p); err == nil {
			ns += (st.utime + st.stime) * (1e9 / clockTick)
		}
	}
	return ns
}

// processCPUNs reads pid's CPU-time clock (clock_getcpuclockid(3): the
// kernel encodes a process clock as ~pid << 3 | CPUCLOCK_SCHED).
func processCPUNs(pid int) (int64, error) {
	const cpuclockSched = 2
	var ts unix.Timespec
	if err := unix.ClockGettime(int32(^pid<<3|cpuclockSched), &ts); err != nil {
		return 0, err
	}
	return ts.Nano(), nil
}

// PeakRSS is the sum of the processes' peak resident set sizes (VmHWM), bytes.
func PeakRSS(pids []int) int64 {
	var total int64
	for _, p := range pids {
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				total += kb * 1024
			}
		}
		f.Close()
	}
	return total
}

// FDObjects are the BPF objects the processes hold open.
type FDObjects struct {
	ProgIDs        map[uint32]bool
	MapIDs         map[uint32]bool
	MapMemlockByID map[uint32]int64
}

// MapMemlock is the memory the kernel charges for the maps, bytes.
func (o FDObjects) MapMemlock() int64 {
	var t int64
	for _, m := range o.MapMemlockByID {
		t += m
	}
	return t
}

// HeldObjects reads /proc/<pid>/fdinfo of every process: BPF program, link
// and map fds name their object IDs there. This tells the observer's
// programs apart from programs other people load at the same time.
func HeldObjects(pids []int) FDObjects {
	o := FDObjects{ProgIDs: map[uint32]bool{}, MapIDs: map[uint32]bool{}, MapMemlockByID: map[uint32]int64{}}
	for _, p := range pids {
		dir := fmt.Sprintf("/proc/%d/fdinfo", p)
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil || !bytes.Contains(data, []byte("_id:")) {
				continue
			}
			fields := parseFDInfo(data)
			if id, ok := fields["prog_id"]; ok {
				o.ProgIDs[uint32(id)] = true
			}
			if id, ok := fields["map_id"]; ok {
				o.MapIDs[uint32(id)] = true
				o.MapMemlockByID[uint32(id)] = fields["memlock"]
			}
		}
	}
	return o
}

func parseFDInfo(data []byte) map[string]int64 {
	out := map[string]int64{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		// fdinfo's numbers are unsigned; anything else is not one of them
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 63); err == nil {
			out[strings.TrimSpace(k)] = int64(n)
		}
	}
	return out
}
