// Package procscan finds, from /proc, the processes that own TCP listening
// sockets. The kernel side learns a listener's owner when listen() runs; for
// sockets that were listening before the observer started, this scan seeds
// the same map once at start.
package procscan

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Listener is one listening socket and the process that owns it.
type Listener struct {
	Netns    uint32 // inode of the network namespace
	Port     uint16
	Family   uint16 // 2 = AF_INET, 10 = AF_INET6
	PID      uint32
	Comm     string
	CgroupID uint64 // cgroup v2 ID (inode of the process's cgroup directory)
}

type sockInfo struct {
	netns        uint32
	port, family uint16
}

// Listeners scans procRoot (normally /proc). cgroup2 is the cgroup v2 mount
// used to turn a process's cgroup path into its ID ("" skips IDs).
func Listeners(procRoot, cgroup2 string) ([]Listener, error) {
	pids, err := pidDirs(procRoot)
	if err != nil {
		return nil, err
	}
	// A socket belongs to the namespace it was created in, which need not
	// be its process's: a thread may have entered another one since (the
	// process's /proc/<pid>/ns/net and net/tcp show the leader thread's).
	// Socket inodes are unique system-wide, so every namespace any thread
	// is in gets its tables read, and sockets are matched by inode alone.
	socks := map[uint64]sockInfo{}
	scanned := map[uint32]bool{}
	for _, pid := range pids {
		taskDir := filepath.Join(procRoot, strconv.Itoa(int(pid)), "task")
		tasks, err := os.ReadDir(taskDir)
		if err != nil {
			continue
		}
		for _, task := range tasks {
			dir := filepath.Join(taskDir, task.Name())
			ns, ok := netnsInode(filepath.Join(dir, "ns", "net"))
			if !ok || scanned[ns] {
				continue
			}
			// A thread may exit between readdir and here: a namespace
			// counts as scanned only once its tables were read, else the
			// next thread in it is asked.
			ok4 := parseListening(filepath.Join(dir, "net", "tcp"), func(inode uint64, port uint16) {
				socks[inode] = sockInfo{ns, port, 2}
			})
			ok6 := parseListening(filepath.Join(dir, "net", "tcp6"), func(inode uint64, port uint16) {
				socks[inode] = sockInfo{ns, port, 10}
			})
			scanned[ns] = ok4 && ok6
		}
	}
	var out []Listener
	seen := map[uint64]bool{}
	for _, pid := range pids { // ascending: the parent usually comes first
		fdDir := filepath.Join(procRoot, strconv.Itoa(int(pid)), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(link[len("socket:["):], "]"), 10, 64)
			if err != nil {
				continue
			}
			info, ok := socks[ino]
			if !ok || seen[ino] {
				continue
			}
			seen[ino] = true
			out = append(out, Listener{Netns: info.netns, Port: info.port, Family: info.family, PID: pid,
				Comm: comm(procRoot, pid), CgroupID: cgroupID(procRoot, cgroup2, pid)})
		}
	}
	return out, nil
}

func pidDirs(procRoot string) ([]uint32, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", procRoot, err)
	}
	var pids []uint32
	for _, e := range ents {
		if n, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
			pids = append(pids, uint32(n))
		}
	}
	return pids, nil
}

func netnsInode(path string) (uint32, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, false
	}
	return uint32(st.Ino), true
}

// parseListening reads /proc/net/tcp{,6}: state 0A is LISTEN.
// It reports whether the whole table was read.
func parseListening(path string, fn func(inode uint64, port uint16)) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return parseListeningFrom(f, fn)
}

// parseListeningFrom reads a /proc/net/tcp{,6} table from r.
func parseListeningFrom(r io.Reader, fn func(inode uint64, port uint16)) bool {
	sc := bufio.NewScanner(r)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" {
			continue
		}
		i := strings.LastIndexByte(fields[1], ':')
		port, err1 := strconv.ParseUint(fields[1][i+1:], 16, 16)
		inode, err2 := strconv.ParseUint(fields[9], 10, 64)
		if i < 0 || err1 != nil || err2 != nil {
			continue
		}
		fn(inode, uint16(port))
	}
	return sc.Err() == nil
}

func comm(procRoot string, pid uint32) string {
	b, _ := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(int(pid)), "comm"))
	return strings.TrimSpace(string(b))
}

// cgroupID is the inode of the process's cgroup v2 directory, which is what
// bpf_get_current_cgroup_id() returns.
func cgroupID(procRoot, cgroup2 string, pid uint32) uint64 {
	if cgroup2 == "" {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(int(pid)), "cgroup"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			var st syscall.Stat_t
			if syscall.Stat(filepath.Join(cgroup2, rest), &st) == nil {
				return st.Ino
			}
		}
	}
	return 0
}
