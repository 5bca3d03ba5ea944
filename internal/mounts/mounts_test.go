package mounts

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCgroup2From(t *testing.T) {
	for _, tc := range []struct{ name, info, want string }{
		{"hybrid", "30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n35 30 0:31 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n", "/sys/fs/cgroup/unified"},
		{"unified", "22 1 0:20 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n", "/sys/fs/cgroup"},
		{"none", "22 1 0:20 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", ""},
	} {
		p := filepath.Join(t.TempDir(), "mountinfo")
		if err := os.WriteFile(p, []byte(tc.info), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := Cgroup2From(p)
		if got != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}
