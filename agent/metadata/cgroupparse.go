package metadata

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// ident is what a cgroup path alone says about its owner. The zero value
// means "a host process": nothing in the path names a container or a pod.
type ident struct {
	containerID string
	podUID      string
}

// ParseCgroupPath extracts the container ID and the Kubernetes pod UID from
// a cgroup path as kubelet and the container runtimes lay it out, under the
// systemd and the cgroupfs cgroup drivers, in cgroup v1 and v2 hierarchies.
// Either result may be empty; both are empty for host processes. Paths
// relative to another cgroup namespace ("/../../kubepods-...") work too,
// because only the components are looked at.
//
// The first container component after the pod component wins, so a
// container nested inside a pod's container (docker-in-docker) is reported
// as the outer one: the one the Kubernetes API knows.
func ParseCgroupPath(path string) (containerID, podUID string) {
	id := parseCgroupPath(path)
	return id.containerID, id.podUID
}

func parseCgroupPath(path string) ident {
	var id ident
	underKubepods := false
	for comp := range strings.SplitSeq(path, "/") {
		if comp == "" || comp == "." || comp == ".." {
			continue
		}
		if id.podUID == "" {
			if comp == "kubepods" || strings.HasPrefix(comp, "kubepods.") || strings.HasPrefix(comp, "kubepods-") {
				underKubepods = true
			}
			if uid, ok := podUIDFromComponent(comp, underKubepods); ok {
				id.podUID = uid
				continue
			}
		}
		if cid, ok := containerIDFromComponent(comp); ok {
			id.containerID = cid
			break
		}
	}
	return id
}

// podUIDFromComponent recognises
//
//	systemd driver:  kubepods-burstable-pod<uid_with_underscores>.slice
//	                 kubepods-pod<uid>.slice (Guaranteed QoS)
//	cgroupfs driver: pod<uid> below a kubepods component
func podUIDFromComponent(comp string, underKubepods bool) (string, bool) {
	if strings.HasPrefix(comp, "kubepods-") && strings.HasSuffix(comp, ".slice") {
		name := strings.TrimSuffix(comp, ".slice")
		i := strings.LastIndex(name, "-pod")
		if i < 0 {
			return "", false
		}
		uid := strings.ReplaceAll(name[i+len("-pod"):], "_", "-")
		return uid, validPodUID(uid)
	}
	if underKubepods && strings.HasPrefix(comp, "pod") {
		uid := comp[len("pod"):]
		return uid, validPodUID(uid)
	}
	return "", false
}

// validPodUID accepts API-server UIDs (8-4-4-4-12 hex) and the 32-hex-digit
// hashes kubelet gives static pods.
func validPodUID(uid string) bool {
	if len(uid) != 36 && len(uid) != 32 {
		return false
	}
	for i := 0; i < len(uid); i++ {
		c := uid[i]
		if len(uid) == 36 && (i == 8 || i == 13 || i == 18 || i == 23) {
			if c != '-' {
				return false
			}
			continue
		}
		if !isHex(c) {
			return false
		}
	}
	return true
}

// Scope prefixes of container cgroups under the systemd driver; the bare
// forms ("crio-<id>" without .scope) appear under the cgroupfs driver.
// crio-conmon-<id> holds CRI-O's monitor process, which runs outside the
// container, so it is deliberately not in this list.
var containerPrefixes = []string{"cri-containerd-", "crio-", "docker-", "libpod-"}

func containerIDFromComponent(comp string) (string, bool) {
	if isContainerHex(comp) {
		return comp, true // cgroupfs driver: /kubepods/.../pod<uid>/<id>, /docker/<id>
	}
	name := strings.TrimSuffix(comp, ".scope")
	for _, p := range containerPrefixes {
		if rest, ok := strings.CutPrefix(name, p); ok && isContainerHex(rest) {
			return rest, true
		}
	}
	return "", false
}

// isContainerHex: containerd, CRI-O and Docker all use 64 lowercase hex digits.
func isContainerHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) || (s[i] >= 'A' && s[i] <= 'F') {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// parseProcCgroup reads the /proc/<pid>/cgroup format: one
// "hierarchy-ID:controllers:path" line per hierarchy; "0::path" is the
// cgroup v2 line. The v2 line is consulted first; on hybrid hosts where the
// container runtime only manages the v1 hierarchies the v2 path is a host
// path, so the v1 lines are tried next, the named systemd hierarchy first.
func parseProcCgroup(r io.Reader) (ident, error) {
	var v2, systemd string
	var v1 []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		first := bytes.IndexByte(line, ':')
		if first < 0 {
			continue
		}
		second := bytes.IndexByte(line[first+1:], ':')
		if second < 0 {
			continue
		}
		hier, ctrl, path := line[:first], line[first+1:first+1+second], string(line[first+2+second:])
		switch {
		case string(hier) == "0" && len(ctrl) == 0:
			v2 = path
		case string(ctrl) == "name=systemd":
			systemd = path
		default:
			v1 = append(v1, path)
		}
	}
	if err := sc.Err(); err != nil {
		return ident{}, fmt.Errorf("read cgroup file: %w", err)
	}
	for _, p := range append([]string{v2, systemd}, v1...) {
		if id := parseCgroupPath(p); id != (ident{}) {
			return id, nil
		}
	}
	return ident{}, nil
}
