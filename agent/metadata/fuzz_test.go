package metadata

import (
	"strings"
	"testing"
)

// Fuzz targets for what this package reads from outside: cgroup paths
// (/proc/<pid>/cgroup) and kubelet's pod log directory names. The seed
// corpora live in testdata/fuzz/<target>/ too; `make fuzz-short` runs each
// target for a few seconds.

// isLowerHex64 is the only container ID shape the runtimes use.
func isLowerHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// isPodUID: an API-server UID (8-4-4-4-12 hex digits) or a static pod's
// 32-hex-digit hash.
func isPodUID(s string) bool {
	switch len(s) {
	case 32:
		for i := 0; i < len(s); i++ {
			if !isHex(s[i]) {
				return false
			}
		}
		return true
	case 36:
		for i := 0; i < len(s); i++ {
			if i == 8 || i == 13 || i == 18 || i == 23 {
				if s[i] != '-' {
					return false
				}
			} else if !isHex(s[i]) {
				return false
			}
		}
		return true
	}
	return false
}

func checkIdent(t *testing.T, what string, id ident, src string) {
	t.Helper()
	if id.containerID != "" {
		if !isLowerHex64(id.containerID) {
			t.Errorf("%s %q: container ID %q is not 64 lowercase hex digits", what, src, id.containerID)
		}
		if !strings.Contains(src, id.containerID) {
			t.Errorf("%s %q: container ID %q is not in the input", what, src, id.containerID)
		}
	}
	if id.podUID != "" {
		if !isPodUID(id.podUID) {
			t.Errorf("%s %q: pod UID %q is neither 8-4-4-4-12 nor 32 hex digits", what, src, id.podUID)
		}
		if !strings.Contains(src, id.podUID) && !strings.Contains(src, strings.ReplaceAll(id.podUID, "-", "_")) {
			t.Errorf("%s %q: pod UID %q is not in the input", what, src, id.podUID)
		}
	}
}

func FuzzParseCgroupPath(f *testing.F) {
	uidU := strings.ReplaceAll(testPodUID, "-", "_")
	for _, p := range []string{
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + testCID + ".scope",
		"/kubepods.slice/kubepods-pod" + uidU + ".slice/crio-" + testCID + ".scope",
		"/kubepods.slice/kubepods-pod" + uidU + ".slice/crio-conmon-" + testCID + ".scope",
		"/kubepods/burstable/pod" + testPodUID + "/" + testCID,
		"/kubepods/besteffort/pod9b7d5e3c1a2f4e6d8c0b1a2f3e4d5c6b/" + testCID,
		"/../../kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + testCID + ".scope",
		"/system.slice/docker-" + testCID + ".scope",
		"/machine.slice/libpod-" + testCID + ".scope",
		"/docker/" + testCID,
		"/user.slice/user-1000.slice/session-3.scope",
		"/",
		"",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, path string) {
		id := parseCgroupPath(path)
		checkIdent(t, "path", id, path)
		if cid, uid := ParseCgroupPath(path); cid != id.containerID || uid != id.podUID {
			t.Errorf("ParseCgroupPath(%q) = %q, %q; parseCgroupPath says %+v", path, cid, uid, id)
		}
		// Only the components count: a path seen from another cgroup
		// namespace ("/../..") or with "." components says the same.
		for _, prefix := range []string{"/../../", "/./", "//"} {
			if got := parseCgroupPath(prefix + path); got != id {
				t.Errorf("%q gives %+v, but %q gives %+v", path, id, prefix+path, got)
			}
		}
		// The first container component wins: nothing below it matters.
		if id.containerID != "" {
			deeper := path + "/docker/" + strings.Repeat("e", 64)
			if got := parseCgroupPath(deeper); got != id {
				t.Errorf("%q gives %+v, but the nested %q gives %+v", path, id, deeper, got)
			}
		}
	})
}

func FuzzParseProcCgroup(f *testing.F) {
	f.Add("0::/kubepods.slice/kubepods-pod" + strings.ReplaceAll(testPodUID, "-", "_") + ".slice/cri-containerd-" + testCID + ".scope\n")
	f.Add("12:memory:/kubepods/burstable/pod" + testPodUID + "/" + testCID + "\n1:name=systemd:/kubepods/burstable/pod" + testPodUID + "/" + testCID + "\n0::/\n")
	f.Add("0::/user.slice/user-1000.slice/session-3.scope\n")
	f.Add("13:cpu,cpuacct:/docker/" + testCID + "\n0::/init.scope\n")
	f.Add("garbage\n::\n0:\n")
	f.Fuzz(func(t *testing.T, content string) {
		id, err := parseProcCgroup(strings.NewReader(content))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
			return
		}
		checkIdent(t, "cgroup file", id, content)
		if id == (ident{}) {
			return
		}
		// What it found is what one of the file's paths says alone.
		for line := range strings.SplitSeq(content, "\n") {
			parts := strings.SplitN(strings.TrimSuffix(line, "\r"), ":", 3)
			if len(parts) == 3 && parseCgroupPath(parts[2]) == id {
				return
			}
		}
		t.Errorf("cgroup file %q gives %+v, which no single line's path gives", content, id)
	})
}

func FuzzParsePodLogDirName(f *testing.F) {
	f.Add("shop_web-0_" + testPodUID)
	f.Add("kube-system_etcd-node1_9b7d5e3c1a2f4e6d8c0b1a2f3e4d5c6b")
	f.Add("default_name_with_underscores_" + testPodUID)
	f.Add("ns_pod_not-a-uid")
	f.Add("__" + testPodUID)
	f.Fuzz(func(t *testing.T, s string) {
		ns, name, uid, ok := parsePodLogDirName(s)
		if !ok {
			if ns != "" || name != "" || uid != "" {
				t.Errorf("%q rejected but returned %q %q %q", s, ns, name, uid)
			}
			return
		}
		if ns == "" || name == "" || strings.Contains(ns+name+uid, "_") {
			t.Errorf("%q: namespace %q, name %q, uid %q: empty or holding '_'", s, ns, name, uid)
		}
		if !isPodUID(uid) {
			t.Errorf("%q: uid %q is neither 8-4-4-4-12 nor 32 hex digits", s, uid)
		}
		if back := ns + "_" + name + "_" + uid; back != s {
			t.Errorf("%q parsed to %q %q %q, which formats back as %q", s, ns, name, uid, back)
		}
	})
}
