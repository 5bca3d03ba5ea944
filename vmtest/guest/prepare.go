package guest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

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
