package loader

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCheckCapsNamesWhatIsMissing(t *testing.T) {
	bit := func(cs ...int) uint64 {
		var m uint64
		for _, c := range cs {
			m |= 1 << uint(c)
		}
		return m
	}
	all := bit(unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_NET_ADMIN)
	for _, c := range []struct {
		name    string
		eff     uint64
		last    int
		missing []string // empty: no error
	}{
		{"the three", all, 40, nil},
		{"sys_admin alone", bit(unix.CAP_SYS_ADMIN), 40, nil},
		{"sys_admin before CAP_BPF existed", bit(unix.CAP_SYS_ADMIN), 37, nil},
		{"the three before CAP_BPF existed", all, 37, []string{"CAP_SYS_ADMIN"}},
		{"no CAP_BPF", all &^ bit(unix.CAP_BPF), 40, []string{"CAP_BPF"}},
		{"no CAP_PERFMON", all &^ bit(unix.CAP_PERFMON), 40, []string{"CAP_PERFMON"}},
		{"no CAP_NET_ADMIN", all &^ bit(unix.CAP_NET_ADMIN), 40, []string{"CAP_NET_ADMIN"}},
		{"nothing", 0, -1, []string{"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"}},
	} {
		err := checkCaps(c.eff, c.last)
		if len(c.missing) == 0 {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error, want one naming %v", c.name, c.missing)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "missing capabilit") || !strings.Contains(msg, "run as root") {
			t.Errorf("%s: %q: want one line starting \"missing capability\" and naming the fix", c.name, msg)
		}
		named, _, _ := strings.Cut(msg, ": run as root")
		for _, m := range []string{"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"} {
			want := false
			for _, x := range c.missing {
				want = want || x == m
			}
			if got := strings.Contains(named, m+" ("); got != want {
				t.Errorf("%s: %q names %s as missing: %v, want %v", c.name, named, m, got, want)
			}
		}
		if !errors.Is(err, ErrPrivileges) {
			t.Errorf("%s: %q is not ErrPrivileges", c.name, msg)
		}
	}
}
