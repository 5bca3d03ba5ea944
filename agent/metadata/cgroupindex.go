package metadata

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
)

// maxWalkDirs bounds one walk of the cgroup2 hierarchy. A node with the
// kubelet default of 110 pods has a few thousand cgroups; this is far above
// that and still a bounded amount of work.
const maxWalkDirs = 1 << 17

// cgroupID returns the cgroup v2 ID of a cgroup directory: its inode
// number, which on 64-bit kernels is the full kernfs node ID that
// bpf_get_current_cgroup_id() returns.
func cgroupID(info fs.FileInfo) (uint64, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Ino, true
}

// walkCgroups visits every directory of the cgroup2 hierarchy at root and
// calls visit with its ID and its path relative to root ("/" for root
// itself, "/kubepods.slice/..." below it). Cgroups that vanish during the
// walk are skipped; the walk stops after maxWalkDirs directories.
func walkCgroups(root string, visit func(id uint64, path string)) error {
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked
			}
			return nil // unreadable subtree: resolve what we can
		}
		if !d.IsDir() {
			return nil
		}
		if n++; n > maxWalkDirs {
			return fs.SkipAll
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		id, ok := cgroupID(info)
		if !ok {
			return nil
		}
		rel := strings.TrimPrefix(p, root)
		if rel == "" {
			rel = "/"
		}
		visit(id, rel)
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk cgroup2 hierarchy %s: %w", root, err)
	}
	return nil
}
