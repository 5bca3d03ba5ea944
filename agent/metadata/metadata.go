// Package metadata names the workload behind a TCP connection: it maps the
// cgroup ID and PID that the kernel side reports to a container ID and to
// the Kubernetes pod (UID, name, namespace) that runs it, and a peer IP to
// the pod that owns it.
//
// Where each answer comes from (docs/metadata.md has the details):
//   - cgroup ID -> cgroup path: a walk of the cgroup2 hierarchy, whose
//     directory inode numbers are the IDs bpf_get_current_cgroup_id()
//     returns. Results go into a bounded LRU; a miss triggers a
//     rate-limited rewalk that also pre-fills every container cgroup.
//   - PID -> cgroup path: /proc/<pid>/cgroup (v2 line first, then v1).
//   - cgroup path -> container ID and pod UID: the layouts of kubelet's
//     systemd and cgroupfs drivers and of containerd, CRI-O and Docker.
//   - pod UID -> name and namespace, pod IP -> pod: a pod informer limited
//     to this node when a Kubernetes API is configured, else kubelet's
//     /var/log/pods/<namespace>_<pod>_<uid> directories (names only).
//
// Nothing is guessed: a host process gets the zero Workload, a container
// outside Kubernetes only its container ID, and a pod not (or no longer)
// known to the source leaves Pod and Namespace empty.
package metadata

import (
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/mounts"

	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"
)

// Workload is the owner of a process or cgroup. All fields are empty for
// host processes.
type Workload struct {
	ContainerID string // 64 hex digits, without the runtime prefix
	PodUID      string
	Pod         string
	Namespace   string
}

// Options configure a Resolver; the zero value autodetects everything.
type Options struct {
	// CgroupRoot is the cgroup2 mount point; "" finds it in
	// /proc/self/mountinfo: the mount showing the most of the hierarchy
	// (a bind of the host's, inside a container), then /sys/fs/cgroup,
	// then /sys/fs/cgroup/unified (hybrid hosts).
	CgroupRoot string
	// ProcRoot is where /proc is mounted; "" means /proc.
	ProcRoot string
	// PodLogDir is kubelet's pod log directory, used for pod names when no
	// Kubernetes API is configured; "" means /var/log/pods.
	PodLogDir string
	// Kubeconfig is a kubeconfig file; "" means $KUBECONFIG, then the
	// in-cluster service account, then no API at all.
	Kubeconfig string
	// Client, when set, is used instead of building one from Kubeconfig
	// (tests, or an agent that already has a client).
	Client kubernetes.Interface
	// NodeName limits the pod informer to this node's pods; "" means
	// $NODE_NAME. Required when a Kubernetes API is used.
	NodeName string
	// CacheSize bounds the cgroup ID cache (entries); 0 means 16384.
	CacheSize int
	// RescanInterval is the least time between two walks of the cgroup
	// hierarchy, and between two pod log directory scans, that a cache
	// miss may trigger; 0 means 1s. Known pods' directories are rescanned
	// at most every 10 intervals so that deleted pods disappear.
	RescanInterval time.Duration
	// Clock returns the current time; nil means time.Now. Injected by tests.
	Clock func() time.Time
}

const (
	defaultCacheSize      = 16384
	defaultRescanInterval = time.Second
	podDirMaxAgeFactor    = 10
)

// Resolver answers workload questions. Its methods are safe for concurrent
// use.
type Resolver struct {
	cgroupRoot string
	procRoot   string
	podLogDir  string
	interval   time.Duration
	now        func() time.Time

	mu       sync.Mutex // guards cache
	cache    *lru
	walkMu   sync.Mutex // one walk at a time; guards lastWalk
	lastWalk time.Time

	pods      *podStore
	informer  bool         // pods come from the API server, not the log directory
	scanMu    sync.Mutex   // one pod directory scan at a time
	lastScan  atomic.Int64 // UnixNano of the last scan's start
	stopInf   func()
	closeOnce sync.Once
}

// New builds a Resolver: it finds the cgroup2 hierarchy and walks it once,
// and either starts a pod informer for this node (waiting until its first
// list is in, or ctx ends) or scans the pod log directory.
func New(ctx context.Context, o Options) (*Resolver, error) {
	r := &Resolver{
		cgroupRoot: o.CgroupRoot,
		procRoot:   o.ProcRoot,
		podLogDir:  o.PodLogDir,
		interval:   o.RescanInterval,
		now:        o.Clock,
		pods:       newPodStore(),
	}
	if r.procRoot == "" {
		r.procRoot = "/proc"
	}
	if r.podLogDir == "" {
		r.podLogDir = "/var/log/pods"
	}
	if r.interval <= 0 {
		r.interval = defaultRescanInterval
	}
	if r.now == nil {
		r.now = time.Now
	}
	size := o.CacheSize
	if size <= 0 {
		size = defaultCacheSize
	}
	r.cache = newLRU(size)

	if r.cgroupRoot == "" {
		root, err := mounts.Cgroup2From(filepath.Join(r.procRoot, "self", "mountinfo"))
		if err != nil {
			return nil, fmt.Errorf("metadata: %w", err)
		}
		r.cgroupRoot = root
	}
	if st, err := os.Stat(r.cgroupRoot); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("metadata: cgroup2 root %s is not a directory (mount the host's cgroup2 hierarchy there): %v", r.cgroupRoot, err)
	}
	if err := r.walk(r.now(), 0); err != nil && !errors.Is(err, errNotFound) {
		return nil, fmt.Errorf("metadata: %w", err)
	}

	client, err := kubeClient(o)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	if client == nil {
		if err := r.scanPods(r.now()); err != nil {
			return nil, fmt.Errorf("metadata: %w", err)
		}
		return r, nil
	}
	node := o.NodeName
	if node == "" {
		node = os.Getenv("NODE_NAME")
	}
	if node == "" {
		return nil, errors.New("metadata: a Kubernetes API is configured but the node name is unknown (set NODE_NAME from the downward API: fieldRef spec.nodeName)")
	}
	stop, err := startPodInformer(ctx, client, node, r.pods)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	r.informer, r.stopInf = true, stop
	return r, nil
}

// CgroupRoot is the cgroup2 hierarchy the Resolver reads: the one to
// attach cgroup BPF programs to so that their cgroup IDs match.
func (r *Resolver) CgroupRoot() string { return r.cgroupRoot }

// Close stops the pod informer, if any. The Resolver must not be used
// afterwards.
func (r *Resolver) Close() error {
	r.closeOnce.Do(func() {
		if r.stopInf != nil {
			r.stopInf()
		}
	})
	return nil
}

// ByCgroupID returns the workload of the cgroup v2 with this ID (the value
// of bpf_get_current_cgroup_id()). A cache hit takes two short locks and
// does not allocate. An ID not seen before triggers a walk of the
// hierarchy, at most once per RescanInterval; until then it resolves to the
// zero Workload.
func (r *Resolver) ByCgroupID(id uint64) Workload {
	r.mu.Lock()
	ci, ok := r.cache.get(id)
	r.mu.Unlock()
	if !ok {
		if err := r.walk(r.now(), id); err != nil {
			return Workload{}
		}
		r.mu.Lock()
		ci, ok = r.cache.get(id)
		r.mu.Unlock()
		if !ok {
			return Workload{}
		}
	}
	return r.workload(ci)
}

// ByPID returns the workload of a process from /proc/<pid>/cgroup. It reads
// the file on every call (PIDs are reused, so it is not cached); the zero
// Workload is returned for host processes and for processes that are gone.
func (r *Resolver) ByPID(pid uint32) Workload {
	f, err := os.Open(filepath.Join(r.procRoot, strconv.FormatUint(uint64(pid), 10), "cgroup"))
	if err != nil {
		return Workload{}
	}
	defer f.Close()
	ci, err := parseProcCgroup(f)
	if err != nil {
		return Workload{}
	}
	return r.workload(ci)
}

// PodByIP returns the pod that owns ip on the pod network (IPv4-mapped
// IPv6 addresses match their IPv4 form). Only the pod informer knows pod
// IPs, and only of this node's pods; host-network pods are never returned
// since their address is the node's.
func (r *Resolver) PodByIP(ip netip.Addr) (namespace, pod string, ok bool) {
	m, ok := r.pods.byAddr(ip)
	return m.namespace, m.name, ok
}

func (r *Resolver) workload(ci ident) Workload {
	w := Workload{ContainerID: ci.containerID, PodUID: ci.podUID}
	if ci.podUID == "" {
		return w
	}
	m, ok := r.pods.get(ci.podUID)
	if !r.informer {
		// The log directory has no change feed: rescan on a miss, and
		// now and then on a hit so that deleted pods drop out.
		maxAge := r.interval * podDirMaxAgeFactor
		if now := r.now(); (!ok && r.sinceScan(now) >= r.interval) || r.sinceScan(now) >= maxAge {
			if r.scanPods(now) == nil {
				m, ok = r.pods.get(ci.podUID)
			}
		}
	}
	if ok {
		w.Pod, w.Namespace = m.name, m.namespace
	}
	return w
}

func (r *Resolver) sinceScan(now time.Time) time.Duration {
	return time.Duration(now.UnixNano() - r.lastScan.Load())
}

var errNotFound = errors.New("cgroup not found")

// walk rewalks the hierarchy unless another walk is running or the last
// one is younger than the rescan interval, inserting every cgroup that
// belongs to a container or pod, and want (any cgroup, host ones too) into
// the cache. want 0 asks for nothing in particular.
func (r *Resolver) walk(now time.Time, want uint64) error {
	if !r.walkMu.TryLock() {
		return errors.New("walk in progress")
	}
	defer r.walkMu.Unlock()
	if !r.lastWalk.IsZero() && now.Sub(r.lastWalk) < r.interval {
		return errors.New("rescan rate-limited")
	}
	r.lastWalk = now
	found := false
	err := walkCgroups(r.cgroupRoot, func(id uint64, path string) {
		ci := parseCgroupPath(path)
		if id == want {
			found = true
			r.mu.Lock()
			r.cache.add(id, ci)
			r.mu.Unlock()
			return
		}
		if ci != (ident{}) {
			r.mu.Lock()
			r.cache.addIfAbsent(id, ci)
			r.mu.Unlock()
		}
	})
	if err != nil {
		return err
	}
	if want != 0 && !found {
		return errNotFound
	}
	return nil
}

func (r *Resolver) scanPods(now time.Time) error {
	if !r.scanMu.TryLock() {
		return errors.New("scan in progress")
	}
	defer r.scanMu.Unlock()
	r.lastScan.Store(now.UnixNano())
	pods, err := scanPodLogDir(r.podLogDir)
	if err != nil {
		return err
	}
	r.pods.replaceNames(pods)
	return nil
}
