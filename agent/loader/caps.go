package loader

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// capability is one capability the observer needs and what the kernel
// needs it for (what TestCapabilityClaims in agent/cmd/ebpf-net-obs shows
// failing without it).
type capability struct {
	bit  int
	name string
	why  string
}

// needed are the capabilities the observer needs on kernels with CAP_BPF
// (5.8+). CAP_SYS_ADMIN stands in for each of them.
var needed = []capability{
	{unix.CAP_BPF, "CAP_BPF", "creating maps and loading programs"},
	{unix.CAP_PERFMON, "CAP_PERFMON", "loading the tracepoint programs and reading kernel memory with bpf_probe_read_kernel"},
	{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN", "loading the sock_ops program"},
}

// capFix is the fix every privilege error names.
const capFix = "run as root, or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN " +
	"(setpriv --inh-caps +bpf,+perfmon,+net_admin --ambient-caps +bpf,+perfmon,+net_admin; " +
	"systemd AmbientCapabilities=; Kubernetes securityContext.capabilities.add: [BPF, PERFMON, NET_ADMIN])"

// CheckCapabilities fails, with one line naming each missing capability and
// the fix, unless this thread's effective set has what loading and
// attaching the observer needs. It checks before anything is loaded: the
// kernel's own answer is a bare EPERM from whichever call comes first.
func CheckCapabilities() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil // cannot tell: let the kernel answer
	}
	eff := uint64(data[1].Effective)<<32 | uint64(data[0].Effective)
	return checkCaps(eff, lastCap())
}

// lastCap is the highest capability this kernel knows (-1: unknown).
func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}

// checkCaps is CheckCapabilities for an effective set and the kernel's
// highest capability.
func checkCaps(eff uint64, last int) error {
	has := func(c int) bool { return eff&(1<<uint(c)) != 0 }
	if has(unix.CAP_SYS_ADMIN) {
		return nil
	}
	if last >= 0 && last < unix.CAP_BPF {
		return &capError{"missing capability CAP_SYS_ADMIN (this kernel has no CAP_BPF: loading BPF programs needs CAP_SYS_ADMIN): run as root, or grant CAP_SYS_ADMIN"}
	}
	var missing []string
	for _, c := range needed {
		if !has(c.bit) {
			missing = append(missing, fmt.Sprintf("%s (%s)", c.name, c.why))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	word := "capability"
	if len(missing) > 1 {
		word = "capabilities"
	}
	return &capError{fmt.Sprintf("missing %s %s: %s", word, strings.Join(missing, ", "), capFix)}
}

// capError is a one-line privilege error; it is ErrPrivileges.
type capError struct{ msg string }

func (e *capError) Error() string        { return e.msg }
func (e *capError) Is(target error) bool { return target == ErrPrivileges }
