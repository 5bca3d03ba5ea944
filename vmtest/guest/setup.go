// Package guest boots a kernel under virtme-ng (QEMU, the host's filesystem
// over 9p) and runs a command in it as root, passing its output and exit
// status through.
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

// HostPackages are installed from the host's own (bookworm) apt sources:
// QEMU, udev (virtme-init finds its virtio-serial ports through it),
// busybox-static (virtme-ng builds the initramfs that loads 9p from it) and the
// dependencies of virtme-ng.
var HostPackages = []string{
	"qemu-system-x86", "udev", "busybox-static",
	"python3-argcomplete", "python3-pkg-resources", "python3-requests", "file", "kmod",
}

// VirtmeSuite is where virtme-ng comes from: it is not in bookworm, and
// trixie's 1.35 is arch all and runs on bookworm's Python.
const VirtmeSuite = "trixie"

// Installed reports whether dpkg has pkg installed.
func Installed(pkg string) bool {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", pkg).Output()
	return err == nil && strings.Contains(string(out), "install ok installed")
}

// Setup installs what booting a guest needs, skipping what is there.
func Setup(ctx context.Context, cache kernels.Cache) error {
	var missing []string
	for _, p := range HostPackages {
		if !Installed(p) {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		if os.Geteuid() != 0 {
			return fmt.Errorf("missing packages %v: run `vmtest setup` as root (or apt-get install them)", missing)
		}
		cache.Logf("installing %s", strings.Join(missing, " "))
		if err := aptInstall(ctx, missing); err != nil {
			cache.Logf("apt-get install failed (%v); running apt-get update and retrying", err)
			if out, err := exec.CommandContext(ctx, "apt-get", "-o", aptLockWait, "update", "-qq").CombinedOutput(); err != nil {
				return fmt.Errorf("apt-get update: %v\n%s", err, out)
			}
			if err := aptInstall(ctx, missing); err != nil {
				return err
			}
		}
	}
	if !Installed("virtme-ng") {
		if os.Geteuid() != 0 {
			return fmt.Errorf("virtme-ng is not installed: run `vmtest setup` as root")
		}
		apt, err := cache.Lists(ctx, VirtmeSuite)
		if err != nil {
			return err
		}
		pkgs, err := apt.ReadPackages(ctx)
		if err != nil {
			return err
		}
		version := ""
		for _, p := range pkgs {
			if p.Name == "virtme-ng" && (version == "" || kernels.CompareVersions(p.Version, version) > 0) {
				version = p.Version
			}
		}
		if version == "" {
			return fmt.Errorf("virtme-ng is not in Debian %s's index", VirtmeSuite)
		}
		deb, err := apt.Download(ctx, filepath.Join(cache.Dir, "debs"), "virtme-ng", version, cache.Logf)
		if err != nil {
			return err
		}
		cache.Logf("dpkg -i %s", filepath.Base(deb))
		if out, err := exec.CommandContext(ctx, "dpkg", "-i", deb).CombinedOutput(); err != nil {
			return fmt.Errorf("dpkg -i %s: %v\n%s", deb, err, out)
		}
	}
	if _, err := exec.LookPath("vng"); err != nil {
		return fmt.Errorf("virtme-ng installed but `vng` is not on PATH: %v", err)
	}
	return nil
}

// aptLockWait makes apt wait for another apt's lock (an unattended upgrade,
// a second make) instead of failing at once.
const aptLockWait = "DPkg::Lock::Timeout=600"

func aptInstall(ctx context.Context, pkgs []string) error {
	args := append([]string{"-o", aptLockWait, "install", "-y", "-qq", "--no-install-recommends"}, pkgs...)
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install %s: %v\n%s", strings.Join(pkgs, " "), err, lastLines(out, 15))
	}
	return nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
