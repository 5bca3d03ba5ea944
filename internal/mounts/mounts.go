// Package mounts finds kernel filesystems the observer depends on.
package mounts

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// Cgroup2 returns the mount point of the cgroup v2 hierarchy: /sys/fs/cgroup
// on unified hosts, /sys/fs/cgroup/unified on hybrid ones.
func Cgroup2() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	defer f.Close()
	return cgroup2From(f)
}

func cgroup2From(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
		line := sc.Text()
		sep := strings.Index(line, " - ")
		if sep < 0 {
			continue
		}
		fields, tail := strings.Fields(line[:sep]), strings.Fields(line[sep+3:])
		if len(fields) >= 5 && len(tail) >= 1 && tail[0] == "cgroup2" {
			return fields[4], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	return "", fmt.Errorf("no cgroup2 filesystem mounted (mount one: mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 none /sys/fs/cgroup/unified)")
}
