package metadata

import (
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/mounts"

	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
)

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func randUID(t *testing.T) string {
	h := randHex(t, 16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// makeCgroup creates rel (and its missing parents) under root and removes,
// at cleanup, exactly the directories it created, leaf first.
func makeCgroup(t *testing.T, root, rel string) string {
	t.Helper()
	var created []string
	p := root
	for comp := range strings.SplitSeq(rel, "/") {
		p = filepath.Join(p, comp)
		err := os.Mkdir(p, 0o755)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			t.Fatalf("create cgroup %s: %v", p, err)
		}
		created = append(created, p)
	}
	t.Cleanup(func() {
		for i := len(created) - 1; i >= 0; i-- {
			var err error
			for range 50 { // a just-killed process may take a moment to leave
				if err = os.Remove(created[i]); err == nil || !errors.Is(err, syscall.EBUSY) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("remove cgroup %s: %v", created[i], err)
			}
		}
	})
	return p
}

// startIn starts `sleep 60` and moves it into cgroup dir; cleanup kills it.
// Cleanups run last-registered first, so register this after makeCgroup:
// the process is gone before its cgroup is removed.
func startIn(t *testing.T, dir string) int {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	pid := cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatalf("move pid %d into %s: %v", pid, dir, err)
	}
	return pid
}

// kernelCgroupID asks the kernel for a cgroup's ID two ways that do not go
// through the resolver's code: the cgroup file handle (what systemd and
// bpftool use; its 8 bytes are the kernfs node ID that
// bpf_get_current_cgroup_id() returns) and stat(1)'s inode number.
func kernelCgroupID(t *testing.T, dir string) uint64 {
	t.Helper()
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, dir, 0)
	if err != nil {
		t.Fatalf("name_to_handle_at %s: %v", dir, err)
	}
	if len(h.Bytes()) != 8 {
		t.Fatalf("cgroup file handle of %d bytes, want 8", len(h.Bytes()))
	}
	fromHandle := binary.NativeEndian.Uint64(h.Bytes())
	out, err := exec.Command("stat", "-c", "%i", dir).Output()
	if err != nil {
		t.Fatalf("stat %s: %v", dir, err)
	}
	fromStat, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if fromHandle != fromStat {
		t.Fatalf("%s: file handle says cgroup ID %d, stat says inode %d", dir, fromHandle, fromStat)
	}
	return fromHandle
}

func TestPrivilegedRealCgroups(t *testing.T) {
	privtest.Require(t)
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	root, err := mounts.Cgroup2From("/proc/self/mountinfo")
	if err != nil {
		t.Fatalf("this test needs a cgroup2 hierarchy: %v", err)
	}
	t.Logf("cgroup2 root: %s", root)

	// Unique names: a leftover from a killed run cannot collide.
	sdUID, fsUID, lateUID := randUID(t), randUID(t), randUID(t)
	sdCID, fsCID, lateCID := randHex(t, 32), randHex(t, 32), randHex(t, 32)
	sdRel := fmt.Sprintf("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice/cri-containerd-%s.scope",
		strings.ReplaceAll(sdUID, "-", "_"), sdCID)
	fsRel := fmt.Sprintf("kubepods/burstable/pod%s/%s", fsUID, fsCID)
	sdDir, fsDir := makeCgroup(t, root, sdRel), makeCgroup(t, root, fsRel)
	sdPID, fsPID := startIn(t, sdDir), startIn(t, fsDir)

	logs := t.TempDir()
	mkdirs(t, logs, "shop_checkout-7d9f_"+sdUID, "kube-system_coredns-abc_"+fsUID, "shop_late-1_"+lateUID)
	clock := newFakeClock()
	r, err := New(context.Background(), Options{PodLogDir: logs, Clock: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.CgroupRoot() != root {
		t.Errorf("resolver reads %s, the test made cgroups in %s", r.CgroupRoot(), root)
	}

	cases := []struct {
		name string
		pid  int
		dir  string
		want Workload
	}{
		{"systemd driver, containerd", sdPID, sdDir, Workload{ContainerID: sdCID, PodUID: sdUID, Pod: "checkout-7d9f", Namespace: "shop"}},
		{"cgroupfs driver", fsPID, fsDir, Workload{ContainerID: fsCID, PodUID: fsUID, Pod: "coredns-abc", Namespace: "kube-system"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if w := r.ByPID(uint32(c.pid)); w != c.want {
				t.Errorf("ByPID(%d) = %+v, want %+v", c.pid, w, c.want)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(c.dir, &st); err != nil {
				t.Fatal(err)
			}
			if k := kernelCgroupID(t, c.dir); k != st.Ino {
				t.Fatalf("kernel cgroup ID %d, directory inode %d", k, st.Ino)
			}
			if w := r.ByCgroupID(st.Ino); w != c.want {
				t.Errorf("ByCgroupID(%d) = %+v, want %+v", st.Ino, w, c.want)
			}
		})
	}

	// A container started after New is found by a rate-limited rewalk.
	lateDir := makeCgroup(t, root, fmt.Sprintf("kubepods/besteffort/pod%s/%s", lateUID, lateCID))
	latePID := startIn(t, lateDir)
	lateID := kernelCgroupID(t, lateDir)
	if w := r.ByCgroupID(lateID); w != (Workload{}) {
		t.Errorf("rewalk not rate-limited: %+v", w)
	}
	clock.advance(time.Second)
	wantLate := Workload{ContainerID: lateCID, PodUID: lateUID, Pod: "late-1", Namespace: "shop"}
	if w := r.ByCgroupID(lateID); w != wantLate {
		t.Errorf("new container after the interval: %+v, want %+v", w, wantLate)
	}
	if w := r.ByPID(uint32(latePID)); w != wantLate {
		t.Errorf("ByPID of the new container: %+v", w)
	}

	// This test process itself is not in a pod.
	if w := r.ByPID(uint32(os.Getpid())); w.PodUID != "" {
		t.Errorf("the test process resolved to %+v", w)
	}

	// Deleting the pod's log directory is seen at the next rescan.
	if err := os.Remove(filepath.Join(logs, "shop_checkout-7d9f_"+sdUID)); err != nil {
		t.Fatal(err)
	}
	clock.advance(10 * time.Second)
	want := Workload{ContainerID: sdCID, PodUID: sdUID}
	if w := r.ByPID(uint32(sdPID)); w != want {
		t.Errorf("after the pod directory was deleted: ByPID = %+v, want %+v", w, want)
	}
	if w := r.ByCgroupID(kernelCgroupID(t, sdDir)); w != want {
		t.Errorf("after the pod directory was deleted: ByCgroupID = %+v, want %+v", w, want)
	}
}
