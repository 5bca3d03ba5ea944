// Package mounts finds kernel filesystems the observer depends on.
package mounts

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Cgroup2 returns the mount point of the cgroup v2 hierarchy as this
// process sees it: /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified
// on hybrid ones, a bind of the host's hierarchy inside a container.
func Cgroup2() (string, error) { return Cgroup2From("/proc/self/mountinfo") }

// Cgroup2From returns the mount point of the cgroup2 filesystem in a
// mountinfo file that shows the most of the hierarchy. Inside a container
// the runtime's own /sys/fs/cgroup shows only the container's subtree (its
// mountinfo root is "/" in a private cgroup namespace, or the container's
// path in the host's), while a bind of the host's hierarchy shows the real
// root (a root of "/../.." from inside a private namespace, "/" otherwise).
// So the mount whose root climbs highest wins; then the shortest root; then
// /sys/fs/cgroup, /sys/fs/cgroup/unified (hybrid hosts), first listed.
func Cgroup2From(mountinfo string) (string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	defer f.Close()
	type cand struct {
		point      string
		up, down   int
		preference int
	}
	var best *cand
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// "36 35 98:0 /root /mnt rw,noatime master:1 - cgroup2 cgroup2 rw"
		// Fields are one space apart. Paths have their spaces, tabs and
		// newlines escaped but no other white space (\r, \v, U+00A0 stay),
		// so splitting at any white space would cut such a path in two.
		// The "-" ending the optional fields comes after the mount point
		// and options: a root or mount point named "-" is not it.
		fields := spaceFields(sc.Text())
		sep := slices.Index(fields[min(5, len(fields)):], "-") + 5
		if len(fields) < 5 || sep < 5 || sep+1 >= len(fields) || fields[sep+1] != "cgroup2" {
			continue
		}
		c := cand{point: unescapeMountPath(fields[4]), preference: 2}
		for comp := range strings.SplitSeq(unescapeMountPath(fields[3]), "/") {
			switch comp {
			case "", ".":
			case "..":
				c.up++
			default:
				c.down++
			}
		}
		switch c.point {
		case "/sys/fs/cgroup":
			c.preference = 0
		case "/sys/fs/cgroup/unified":
			c.preference = 1
		}
		if best == nil || c.up > best.up || (c.up == best.up && (c.down < best.down || (c.down == best.down && c.preference < best.preference))) {
			best = &c
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("find cgroup2 mount: read %s: %w", mountinfo, err)
	}
	if best == nil {
		return "", errors.New("no cgroup2 filesystem is mounted (mount -t cgroup2 none /sys/fs/cgroup/unified, or set the cgroup root explicitly)")
	}
	return best.point, nil
}

// spaceFields splits a mountinfo line at its spaces.
func spaceFields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' })
}

// unescapeMountPath undoes the octal escapes (\040 for space, ...) that
// the kernel writes into mountinfo paths.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
