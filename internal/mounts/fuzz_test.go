package mounts

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
)

// Fuzz targets for /proc/self/mountinfo. Seed corpora are also in
// testdata/fuzz/<target>/; `make fuzz-short` runs each for a few seconds.

// escapeMountPath escapes a path as the kernel writes it into mountinfo
// (seq_path and friends: mangle " \t\n\\" to octal).
func escapeMountPath(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\\':
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// kernelFields: at least the five fields before the optional ones, each
// one space apart, none empty or holding other white space.
func kernelFields(pre string) bool {
	parts := strings.Split(pre, " ")
	if len(parts) < 5 {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.IndexFunc(p, unicode.IsSpace) >= 0 {
			return false
		}
	}
	return true
}

func cgroup2From(t *testing.T, mountinfo string) (string, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(p, []byte(mountinfo), 0o600); err != nil {
		t.Fatal(err)
	}
	return Cgroup2From(p)
}

func FuzzCgroup2From(f *testing.F) {
	f.Add("30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n35 30 0:31 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n")
	f.Add("22 1 0:20 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n")
	f.Add("1900 1890 0:30 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw\n1950 1890 0:30 /../../.. /host/sys/fs/cgroup ro,relatime - cgroup2 cgroup2 rw\n")
	f.Add("50 20 0:23 / /host/cg\\040root rw - cgroup2 cgroup2 rw\n")
	f.Add("22 1 0:20 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, info string) {
		got, err := cgroup2From(t, info)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
			if got != "" {
				t.Errorf("error %v, and a mount point %q", err, got)
			}
			if !strings.Contains(err.Error(), "no cgroup2") {
				return // a read error (a line over 1 MiB)
			}
			// No line is a cgroup2 mount in the kernel's format.
			for line := range strings.SplitSeq(info, "\n") {
				pre, post, ok := strings.Cut(line, " - ")
				if ok && kernelFields(pre) && strings.HasPrefix(post, "cgroup2 ") {
					t.Errorf("line %q is a cgroup2 mount, not found", line)
				}
			}
			return
		}
		// What it found is the mount point of a cgroup2 line, unescaped.
		for line := range strings.SplitSeq(info, "\n") {
			if strings.Contains(line, " cgroup2") && strings.Contains(unescapeMountPath(line), got) {
				return
			}
		}
		t.Errorf("%q is not the mount point of any cgroup2 line in %q", got, info)
	})
}

// A cgroup2 mount at any path is found at that path.
func FuzzMountinfoRoundTrip(f *testing.F) {
	f.Add("/sys/fs/cgroup", "/")
	f.Add("/host/cg root", "/../../..")
	f.Add("/mnt/tab\there\\and\nnewline", "/kubepods/burstable/pod1/abc")
	f.Fuzz(func(t *testing.T, point, root string) {
		if point == "" || root == "" {
			return // the kernel writes neither empty
		}
		info := "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n" +
			fmt.Sprintf("35 30 0:31 %s %s rw,relatime shared:9 - cgroup2 cgroup2 rw\n", escapeMountPath(root), escapeMountPath(point))
		got, err := cgroup2From(t, info)
		if err != nil || got != point {
			t.Errorf("mount point %q (root %q) in\n%s\nread as %q, %v", point, root, info, got, err)
		}
	})
}

func FuzzUnescapeMountPath(f *testing.F) {
	f.Add(`/host/cg\040root`)
	f.Add(`a\\b\134c\12`)
	f.Add(`\0401\777\`)
	f.Fuzz(func(t *testing.T, s string) {
		u := unescapeMountPath(s)
		if len(u) > len(s) {
			t.Errorf("%q unescapes to the longer %q", s, u)
		}
		if !strings.Contains(s, `\`) && u != s {
			t.Errorf("%q has no escapes, but unescapes to %q", s, u)
		}
		if back := unescapeMountPath(escapeMountPath(s)); back != s {
			t.Errorf("%q escaped as the kernel does is %q, unescaped %q", s, escapeMountPath(s), back)
		}
	})
}
