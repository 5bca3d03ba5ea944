package guest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ebpf-net-obs/ebpf-net-obs/vmtest/kernels"
)

// KVM modes for Prepare.
const (
	KVMAuto = "auto" // probe once, cache the verdict
	KVMOn   = "on"
	KVMOff  = "off"
)

// Prepared is a kernel ready to boot.
type Prepared struct {
	Kernel *kernels.Kernel
	KVM    KVMVerdict
}

// Prepare installs the tools, fetches the kernel, installs its modules and
// decides between KVM and TCG.
func Prepare(ctx context.Context, cache kernels.Cache, version, suite, kvmMode string) (*Prepared, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("vmtest boots kernels as root (it installs packages and /lib/modules/<release>): run it with sudo")
	}
	if err := Setup(ctx, cache); err != nil {
		return nil, err
	}
	k, err := cache.Fetch(ctx, version, suite)
	if err != nil {
		return nil, err
	}
	if err := cache.InstallModules(ctx, k); err != nil {
		return nil, err
	}
	p := &Prepared{Kernel: k}
	switch kvmMode {
	case KVMOn:
		p.KVM = KVMVerdict{Works: true, Reason: "--kvm on"}
	case KVMOff:
		p.KVM = KVMVerdict{Reason: "--kvm off"}
	case KVMAuto, "":
		p.KVM = DetectKVM(ctx, cache.Dir, k.Vmlinuz, cache.Logf)
	default:
		return nil, fmt.Errorf("--kvm %q: want auto, on or off", kvmMode)
	}
	return p, nil
}

// ProjectRoot walks up from dir to the folder holding go.mod (the project the
// guest gets writable); dir itself when there is none.
func ProjectRoot(dir string) string {
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			return dir
		}
		d = parent
	}
}

// GoCache is the build cache go commands in the guest use: the host's own
// (`go env GOCACHE`), shared writable, so that what the host compiled (the
// tests' packages, prewarmed by the matrix) is not compiled again under TCG.
// The Go cache is safe for concurrent use by several processes. fallback is
// used when there is no go on the host.
func GoCache(ctx context.Context, fallback string) string {
	out, err := exec.CommandContext(ctx, "go", "env", "GOCACHE").Output()
	if d := strings.TrimSpace(string(out)); err == nil && filepath.IsAbs(d) {
		if os.MkdirAll(d, 0o755) == nil {
			return d
		}
	}
	_ = os.MkdirAll(fallback, 0o755)
	return fallback
}
