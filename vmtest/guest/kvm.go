package guest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// KVMVerdict is the cached answer to "does KVM really work here?". /dev/kvm
// can exist and still hang at boot (nested virtualisation in Firecracker), so
// the answer comes from one tiny boot, not from the device node.
type KVMVerdict struct {
	HostKernel string    `json:"host_kernel"`
	Works      bool      `json:"works"`
	Reason     string    `json:"reason"`
	CheckedAt  time.Time `json:"checked_at"`
}

// KVMProbeTimeout bounds the probe boot: with working KVM a virtme-ng boot
// takes seconds; a hung one is what the probe is there to catch.
var KVMProbeTimeout = 45 * time.Second

func hostRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// DetectKVM returns whether guests should use KVM. The verdict is cached in
// cacheDir/kvm.json per host kernel; vmlinuz is the kernel used for the probe.
func DetectKVM(ctx context.Context, cacheDir, vmlinuz string, logf func(string, ...any)) KVMVerdict {
	host := hostRelease()
	path := filepath.Join(cacheDir, "kvm.json")
	if b, err := os.ReadFile(path); err == nil {
		var v KVMVerdict
		if json.Unmarshal(b, &v) == nil && v.HostKernel == host {
			return v
		}
	}
	v := KVMVerdict{HostKernel: host, CheckedAt: time.Now().UTC()}
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		v.Reason = fmt.Sprintf("/dev/kvm unusable (%v): using TCG", err)
	} else {
		f.Close()
		logf("probing KVM with a %s boot (a hang means nested KVM does not work here)", KVMProbeTimeout)
		res, err := Run(ctx, Options{
			Vmlinuz: vmlinuz, Release: filepath.Base(vmlinuz), Command: "true",
			Timeout: KVMProbeTimeout, CPUs: 1, Memory: "512M", KVM: true,
			StateDir: filepath.Join(cacheDir, "runs", "kvm-probe"),
			Stdout:   io.Discard, Stderr: io.Discard,
		})
		switch {
		case err != nil:
			v.Reason = fmt.Sprintf("KVM probe could not start (%v): using TCG", err)
		case res.ExitCode == 0:
			v.Works = true
			v.Reason = fmt.Sprintf("a KVM boot finished in %.1fs", res.Elapsed.Seconds())
		case res.TimedOut:
			v.Reason = fmt.Sprintf("a KVM boot hung for %s: using TCG", KVMProbeTimeout)
		default:
			v.Reason = fmt.Sprintf("a KVM boot failed (exit %d): using TCG", res.ExitCode)
		}
		if ctx.Err() != nil {
			return v // interrupted: do not cache a half-made verdict
		}
	}
	if b, err := json.MarshalIndent(v, "", "  "); err == nil {
		_ = os.MkdirAll(cacheDir, 0o755)
		_ = os.WriteFile(path, append(b, '\n'), 0o644)
	}
	return v
}
