package metadata

import (
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/mounts"

	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	testCID    = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	testPodUID = "3f2b6a1e-8c4d-4e5f-9a0b-1c2d3e4f5a6b"
)

func TestParseProcCgroupFixtures(t *testing.T) {
	tests := []struct {
		file     string
		cid, uid string
	}{
		{"v2-systemd-containerd", testCID, testPodUID},
		{"v2-cgroupfs-containerd", testCID, testPodUID},
		{"v2-systemd-crio-guaranteed", testCID, testPodUID},
		{"v2-crio-conmon", "", testPodUID}, // conmon runs in the pod, outside the container
		{"v2-cgroupns-relative", testCID, testPodUID},
		{"v2-docker-systemd", testCID, ""},
		{"v2-static-pod", testCID, "9b7d5e3c1a2f4e6d8c0b1a2f3e4d5c6b"},
		{"v2-pod-level", "", testPodUID},
		{"v2-host-user", "", ""},
		{"v2-host-sshd", "", ""},
		{"v2-host-root", "", ""},
		{"v1-hybrid-cgroupfs-docker", testCID, testPodUID},
		{"v1-systemd-docker-standalone", testCID, ""},
		{"v1-docker-cgroupfs", testCID, ""},
		{"v1-hybrid-host", "", ""},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.file] = true
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", "proc-cgroup", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := parseProcCgroup(f)
			if err != nil {
				t.Fatal(err)
			}
			if got.containerID != tt.cid || got.podUID != tt.uid {
				t.Errorf("got container %q pod %q, want container %q pod %q", got.containerID, got.podUID, tt.cid, tt.uid)
			}
		})
	}
	all, err := os.ReadDir(filepath.Join("testdata", "proc-cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range all {
		if !seen[e.Name()] {
			t.Errorf("fixture testdata/proc-cgroup/%s has no expectation in the table", e.Name())
		}
	}
}

func TestParseCgroupPath(t *testing.T) {
	uidU := strings.ReplaceAll(testPodUID, "-", "_")
	tests := []struct {
		name, path, cid, uid string
	}{
		{"systemd besteffort containerd", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + testCID + ".scope", testCID, testPodUID},
		{"systemd guaranteed crio", "/kubepods.slice/kubepods-pod" + uidU + ".slice/crio-" + testCID + ".scope", testCID, testPodUID},
		{"systemd docker via cri-dockerd", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/docker-" + testCID + ".scope", testCID, testPodUID},
		{"cgroupfs containerd", "/kubepods/burstable/pod" + testPodUID + "/" + testCID, testCID, testPodUID},
		{"cgroupfs guaranteed", "/kubepods/pod" + testPodUID + "/" + testCID, testCID, testPodUID},
		{"cgroupfs crio", "/kubepods/besteffort/pod" + testPodUID + "/crio-" + testCID, testCID, testPodUID},
		{"crio conmon is not a container", "/kubepods.slice/kubepods-pod" + uidU + ".slice/crio-conmon-" + testCID + ".scope", "", testPodUID},
		{"nested container reports the outer one", "/kubepods/pod" + testPodUID + "/" + testCID + "/docker/" + strings.Repeat("f", 64), testCID, testPodUID},
		{"docker cgroupfs", "/docker/" + testCID, testCID, ""},
		{"docker systemd", "/system.slice/docker-" + testCID + ".scope", testCID, ""},
		{"podman", "/machine.slice/libpod-" + testCID + ".scope", testCID, ""},
		{"pod slice itself", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice", "", testPodUID},
		{"qos slice", "/kubepods.slice/kubepods-burstable.slice", "", ""},
		{"kubepods root", "/kubepods", "", ""},
		{"pod dir outside kubepods is not a pod", "/system.slice/pod" + testPodUID, "", ""},
		{"short id is not a container", "/docker/0123456789ab", "", ""},
		{"upper-case hex is not a container", "/docker/" + strings.ToUpper(testCID), "", ""},
		{"bad uid", "/kubepods/burstable/podnot-a-uid/" + testCID, testCID, ""},
		{"user session", "/user.slice/user-1000.slice/session-3.scope", "", ""},
		{"sshd", "/system.slice/sshd.service", "", ""},
		{"containerd daemon", "/system.slice/containerd.service", "", ""},
		{"root", "/", "", ""},
		{"empty", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cid, uid := ParseCgroupPath(tt.path)
			if cid != tt.cid || uid != tt.uid {
				t.Errorf("ParseCgroupPath(%q) = %q, %q; want %q, %q", tt.path, cid, uid, tt.cid, tt.uid)
			}
		})
	}
}

func TestFindCgroup2Mount(t *testing.T) {
	tests := []struct {
		name, mountinfo, want string
		wantErr               bool
	}{
		{"hybrid", `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`, "/sys/fs/cgroup/unified", false},
		{"unified", `25 20 0:23 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate
`, "/sys/fs/cgroup", false},
		{"prefers the standard place", `50 20 0:23 / /mnt/other\040dir rw - cgroup2 cgroup2 rw
25 20 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
`, "/sys/fs/cgroup", false},
		{"elsewhere, escaped", `50 20 0:23 / /host/cg\040root rw - cgroup2 cgroup2 rw
`, "/host/cg root", false},
		{"in a container: the host's bind beats the runtime's subtree", `1900 1890 0:30 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw
1950 1890 0:30 /../../.. /host/sys/fs/cgroup ro,relatime - cgroup2 cgroup2 rw
`, "/host/sys/fs/cgroup", false},
		{"in a container, host cgroup namespace", `1900 1890 0:30 /kubepods/burstable/pod1/abc /sys/fs/cgroup ro - cgroup2 cgroup rw
1950 1890 0:30 / /host/sys/fs/cgroup/unified ro - cgroup2 cgroup2 rw
`, "/host/sys/fs/cgroup/unified", false},
		{"v1 only", `34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "mountinfo")
			if err := os.WriteFile(p, []byte(tt.mountinfo), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := mounts.Cgroup2From(p)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("findCgroup2Mount = %q, %v; want %q, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
