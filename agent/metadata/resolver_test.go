package metadata

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeClock is a settable clock for rate-limit tests.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func mkdirs(t *testing.T, root string, rels ...string) {
	t.Helper()
	for _, rel := range rels {
		if err := os.MkdirAll(filepath.Join(root, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// fixture is a fake cgroup root (any directory tree has inode numbers) and
// a pod log directory, with a Resolver over them in log-directory mode.
type fixture struct {
	cg, logs string
	clock    *fakeClock
	r        *Resolver
}

func newFixture(t *testing.T, o Options) *fixture {
	t.Helper()
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "") // never pick up a real cluster
	f := &fixture{cg: t.TempDir(), logs: t.TempDir(), clock: newFakeClock()}
	mkdirs(t, f.cg, "system.slice/sshd.service", "user.slice")
	o.CgroupRoot, o.PodLogDir, o.Clock = f.cg, f.logs, f.clock.now
	r, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	f.r = r
	return f
}

var uidU = strings.ReplaceAll(testPodUID, "-", "_")

const podDirPath = "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f2b6a1e_8c4d_4e5f_9a0b_1c2d3e4f5a6b.slice"

func TestByCgroupIDRescansOnMissWithRateLimit(t *testing.T) {
	f := newFixture(t, Options{})
	ctr := filepath.Join(podDirPath, "cri-containerd-"+testCID+".scope")
	mkdirs(t, f.cg, ctr)
	mkdirs(t, f.logs, "shop_checkout-7d9f_"+testPodUID)
	id := inode(t, filepath.Join(f.cg, ctr))

	// New walked before the container existed; the next walk is allowed
	// only one interval later.
	if w := f.r.ByCgroupID(id); w != (Workload{}) {
		t.Fatalf("within the rate limit: got %+v, want the zero Workload", w)
	}
	f.clock.advance(time.Second)
	want := Workload{ContainerID: testCID, PodUID: testPodUID, Pod: "checkout-7d9f", Namespace: "shop"}
	if w := f.r.ByCgroupID(id); w != want {
		t.Fatalf("after the interval: got %+v, want %+v", w, want)
	}
	// The walk pre-filled the pod-level cgroup too.
	f.r.mu.Lock()
	_, ok := f.r.cache.get(inode(t, filepath.Join(f.cg, podDirPath)))
	f.r.mu.Unlock()
	if !ok {
		t.Error("pod-level cgroup was not cached by the walk")
	}
}

func TestByCgroupIDHostAndUnknown(t *testing.T) {
	f := newFixture(t, Options{})
	sshd := inode(t, filepath.Join(f.cg, "system.slice/sshd.service"))
	f.clock.advance(time.Second)
	if w := f.r.ByCgroupID(sshd); w != (Workload{}) {
		t.Fatalf("sshd: got %+v", w)
	}
	// Host cgroups are cached negatively once asked for: no rewalk needed.
	f.r.mu.Lock()
	_, ok := f.r.cache.get(sshd)
	f.r.mu.Unlock()
	if !ok {
		t.Error("host cgroup not cached after a lookup")
	}
	if w := f.r.ByCgroupID(1 << 62); w != (Workload{}) {
		t.Fatalf("unknown id: got %+v", w)
	}
}

func TestByCgroupIDCacheIsBounded(t *testing.T) {
	f := newFixture(t, Options{CacheSize: 4})
	for i := range 10 {
		mkdirs(t, f.cg, filepath.Join("docker", strings.Repeat(string("0123456789"[i]), 64)))
	}
	f.clock.advance(time.Second)
	f.r.ByCgroupID(1 << 62) // miss: walk
	f.r.mu.Lock()
	n := f.r.cache.len()
	f.r.mu.Unlock()
	if n != 4 {
		t.Fatalf("cache holds %d entries, want its bound 4", n)
	}
}

func TestPodLogDirDeletionAndRescan(t *testing.T) {
	f := newFixture(t, Options{})
	ctr := filepath.Join(podDirPath, "cri-containerd-"+testCID+".scope")
	mkdirs(t, f.cg, ctr)
	f.clock.advance(time.Second)
	id := inode(t, filepath.Join(f.cg, ctr))
	w := f.r.ByCgroupID(id)
	if w.PodUID != testPodUID || w.Pod != "" {
		t.Fatalf("before the pod directory exists: %+v", w)
	}
	podDir := filepath.Join(f.logs, "shop_checkout-7d9f_"+testPodUID)
	mkdirs(t, f.logs, filepath.Base(podDir))
	// The miss above scanned just now: the next scan waits an interval.
	if w := f.r.ByCgroupID(id); w.Pod != "" {
		t.Fatalf("rescan not rate-limited: %+v", w)
	}
	f.clock.advance(time.Second)
	if w := f.r.ByCgroupID(id); w.Pod != "checkout-7d9f" || w.Namespace != "shop" {
		t.Fatalf("after a rescan: %+v", w)
	}
	if err := os.Remove(podDir); err != nil {
		t.Fatal(err)
	}
	if w := f.r.ByCgroupID(id); w.Pod == "" {
		t.Fatalf("a hit rescanned before its maximum age: %+v", w)
	}
	f.clock.advance(10 * time.Second)
	want := Workload{ContainerID: testCID, PodUID: testPodUID}
	if w := f.r.ByCgroupID(id); w != want {
		t.Fatalf("after the pod directory vanished: got %+v, want %+v", w, want)
	}
}

func TestParsePodLogDirName(t *testing.T) {
	tests := []struct {
		in           string
		ns, pod, uid string
		ok           bool
	}{
		{"kube-system_coredns-5d78c9869d-abcde_" + testPodUID, "kube-system", "coredns-5d78c9869d-abcde", testPodUID, true},
		{"kube-system_etcd-node1_9b7d5e3c1a2f4e6d8c0b1a2f3e4d5c6b", "kube-system", "etcd-node1", "9b7d5e3c1a2f4e6d8c0b1a2f3e4d5c6b", true},
		{"ns_pod", "", "", "", false},
		{"ns_pod_notauid", "", "", "", false},
		{"a_b_c_" + testPodUID, "", "", "", false},
		{"_pod_" + testPodUID, "", "", "", false},
	}
	for _, tt := range tests {
		ns, pod, uid, ok := parsePodLogDirName(tt.in)
		if ns != tt.ns || pod != tt.pod || uid != tt.uid || ok != tt.ok {
			t.Errorf("parsePodLogDirName(%q) = %q %q %q %v", tt.in, ns, pod, uid, ok)
		}
	}
}

func TestByPIDFromProcFixtures(t *testing.T) {
	f := newFixture(t, Options{})
	proc := t.TempDir()
	for pid, fixture := range map[string]string{"100": "v2-systemd-containerd", "200": "v1-hybrid-cgroupfs-docker", "300": "v2-host-sshd"} {
		b, err := os.ReadFile(filepath.Join("testdata", "proc-cgroup", fixture))
		if err != nil {
			t.Fatal(err)
		}
		mkdirs(t, proc, pid)
		if err := os.WriteFile(filepath.Join(proc, pid, "cgroup"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mkdirs(t, f.logs, "shop_checkout-7d9f_"+testPodUID)
	f.r.procRoot = proc
	f.clock.advance(time.Second)
	want := Workload{ContainerID: testCID, PodUID: testPodUID, Pod: "checkout-7d9f", Namespace: "shop"}
	for _, pid := range []uint32{100, 200} {
		if w := f.r.ByPID(pid); w != want {
			t.Errorf("pid %d: got %+v, want %+v", pid, w, want)
		}
	}
	if w := f.r.ByPID(300); w != (Workload{}) {
		t.Errorf("host pid: got %+v", w)
	}
	if w := f.r.ByPID(999); w != (Workload{}) {
		t.Errorf("gone pid: got %+v", w)
	}
}

func TestByCgroupIDHitDoesNotAllocate(t *testing.T) {
	f := newFixture(t, Options{})
	ctr := filepath.Join(podDirPath, "cri-containerd-"+testCID+".scope")
	mkdirs(t, f.cg, ctr)
	mkdirs(t, f.logs, "shop_checkout-7d9f_"+testPodUID)
	f.clock.advance(time.Second)
	id := inode(t, filepath.Join(f.cg, ctr))
	if w := f.r.ByCgroupID(id); w.Pod == "" {
		t.Fatalf("warm-up lookup: %+v", w)
	}
	if n := testing.AllocsPerRun(1000, func() { f.r.ByCgroupID(id) }); n != 0 {
		t.Errorf("a cache hit allocates %.1f times, want 0", n)
	}
}

func TestResolverConcurrentUse(t *testing.T) {
	f := newFixture(t, Options{CacheSize: 8})
	var ids []uint64
	for i := range 16 {
		p := filepath.Join(podDirPath, "cri-containerd-"+strings.Repeat(string("0123456789abcdef"[i]), 64)+".scope")
		mkdirs(t, f.cg, p)
		ids = append(ids, inode(t, filepath.Join(f.cg, p)))
	}
	mkdirs(t, f.logs, "shop_checkout-7d9f_"+testPodUID)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				f.clock.advance(time.Millisecond)
				w := f.r.ByCgroupID(ids[(i+g)%len(ids)])
				if w.ContainerID != "" && w.PodUID != testPodUID {
					t.Errorf("inconsistent workload %+v", w)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkByCgroupIDHit(b *testing.B) {
	cg := b.TempDir()
	p := filepath.Join(cg, podDirPath, "cri-containerd-"+testCID+".scope")
	if err := os.MkdirAll(p, 0o755); err != nil {
		b.Fatal(err)
	}
	b.Setenv("KUBECONFIG", "")
	b.Setenv("KUBERNETES_SERVICE_HOST", "")
	r, err := New(context.Background(), Options{CgroupRoot: cg, PodLogDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.ByCgroupID(st.Ino)
	}
}
