package observer

import (
	"net/netip"
	"sync"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/conntrack"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/metadata"
)

// rootCgroupID is the cgroup v2 root. On hybrid hosts whose runtime
// manages containers in the v1 hierarchies, every process sits there in v2,
// so the process's own /proc/<pid>/cgroup is asked instead.
const rootCgroupID = 1

// workloads adapts the metadata resolver to what the connection table needs.
type workloads struct {
	r      *metadata.Resolver
	mu     sync.Mutex
	byPID  map[uint32]conntrack.Workload // bounded; cleared when full
	maxPID int
}

func newWorkloads(r *metadata.Resolver) *workloads {
	return &workloads{r: r, byPID: map[uint32]conntrack.Workload{}, maxPID: 4096}
}

func (w *workloads) Workload(cgroupID uint64, pid uint32) conntrack.Workload {
	if cgroupID != rootCgroupID || pid == 0 {
		return convert(w.r.ByCgroupID(cgroupID))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if wl, ok := w.byPID[pid]; ok {
		return wl
	}
	wl := convert(w.r.ByPID(pid))
	if len(w.byPID) >= w.maxPID {
		clear(w.byPID)
	}
	w.byPID[pid] = wl
	return wl
}

func (w *workloads) Peer(ip netip.Addr) (string, string, bool) { return w.r.PodByIP(ip) }

func convert(m metadata.Workload) conntrack.Workload {
	return conntrack.Workload{ContainerID: m.ContainerID, PodUID: m.PodUID, Pod: m.Pod, Namespace: m.Namespace}
}
