// Package kernels fetches Debian kernel image packages by version prefix into
// a private cache and makes their modules visible to virtme-ng.
//
// Nothing of the system's apt setup is used or changed: each suite gets its
// own sources list and lists/archives directories under the cache (see
// AptDirs). A kernel is resolved to the newest generic amd64 image of its
// suite, downloaded with `apt-get download`, unpacked with `dpkg-deb -x`, and
// its modules are copied to /lib/modules/<release> (virtme-ng builds the
// guest's module set from there) followed by `depmod <release>`.
package kernels

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ListsMaxAge is how long a suite's Packages index is trusted before
// `apt-get update` runs again.
const ListsMaxAge = 24 * time.Hour

// DefaultCacheDir is $XDG_CACHE_HOME/ebpf-net-obs, else ~/.cache/ebpf-net-obs.
func DefaultCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "ebpf-net-obs")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "ebpf-net-obs")
	}
	return filepath.Join(os.TempDir(), "ebpf-net-obs-cache")
}

// Cache is the root of vmtest's downloads.
type Cache struct {
	Dir string
	Log func(format string, args ...any)
}

func (c Cache) Logf(format string, args ...any) {
	if c.Log != nil {
		c.Log(format, args...)
	}
}

// Apt returns the private apt state of a suite.
func (c Cache) Apt(suite string) AptDirs {
	return AptDirs{Root: filepath.Join(c.Dir, "apt", suite)}
}

// Kernel is a fetched, unpacked kernel.
type Kernel struct {
	Prefix         string    `json:"prefix"`
	Suite          string    `json:"suite"`
	Package        string    `json:"package"`
	PackageVersion string    `json:"package_version"`
	Release        string    `json:"release"`
	Vmlinuz        string    `json:"vmlinuz"`
	Tree           string    `json:"tree"`
	ModulesDir     string    `json:"modules_dir"` // inside Tree
	FetchedAt      time.Time `json:"fetched_at"`
}

// Lists makes sure the suite's private Packages index exists and is fresh.
// A failed refresh with an older index present only warns (offline reruns).
func (c Cache) Lists(ctx context.Context, suiteName string) (AptDirs, error) {
	s, err := LookupSuite(suiteName)
	if err != nil {
		return AptDirs{}, err
	}
	d := c.Apt(s.Name)
	if err := d.Prepare(s); err != nil {
		return d, fmt.Errorf("prepare private apt state in %s: %w", d.Root, err)
	}
	if d.Fresh(ListsMaxAge) {
		return d, nil
	}
	if err := d.Update(ctx, c.Logf); err != nil {
		if files, _ := d.PackagesFiles(); len(files) > 0 {
			c.Logf("warning: %v; using the older index", err)
			return d, nil
		}
		return d, err
	}
	return d, nil
}

// Resolve finds the newest package for a version prefix in suite ("" picks
// SuiteFor(prefix)).
func (c Cache) Resolve(ctx context.Context, prefix, suite string) (Candidate, AptDirs, string, error) {
	if suite == "" {
		suite = SuiteFor(prefix)
	}
	d, err := c.Lists(ctx, suite)
	if err != nil {
		return Candidate{}, d, suite, err
	}
	pkgs, err := d.ReadPackages(ctx)
	if err != nil {
		return Candidate{}, d, suite, err
	}
	cand, err := Resolve(pkgs, prefix)
	if err != nil {
		return Candidate{}, d, suite, fmt.Errorf("kernel %s in Debian %s: %w", prefix, suite, err)
	}
	return cand, d, suite, nil
}

// Fetch resolves, downloads and unpacks the kernel for a version prefix.
// An already unpacked package of the same version is reused.
func (c Cache) Fetch(ctx context.Context, prefix, suite string) (*Kernel, error) {
	cand, apt, suite, err := c.Resolve(ctx, prefix, suite)
	if err != nil {
		return nil, err
	}
	tree := filepath.Join(c.Dir, "kernels", cand.Release)
	meta := filepath.Join(tree, "vmtest-kernel.json")
	if k, err := readKernel(meta); err == nil && k.PackageVersion == cand.Version && k.Package == cand.Name {
		k.Prefix = prefix
		return k, k.mergeUsr()
	}
	c.Logf("kernel %s -> %s %s (Debian %s)", prefix, cand.Name, cand.Version, suite)
	tmp := tree + ".partial"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	for _, part := range cand.Parts() {
		deb, err := apt.Download(ctx, filepath.Join(c.Dir, "debs"), part.Name, part.Version, c.Logf)
		if err != nil {
			return nil, err
		}
		c.Logf("dpkg-deb -x %s", filepath.Base(deb))
		if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("dpkg-deb -x %s: %v\n%s", deb, err, tail(out, 10))
		}
	}
	_ = os.RemoveAll(tree)
	if err := os.Rename(tmp, tree); err != nil {
		return nil, err
	}
	k := &Kernel{
		Prefix: prefix, Suite: suite, Package: cand.Name, PackageVersion: cand.Version,
		Release: cand.Release, Tree: tree, FetchedAt: time.Now().UTC(),
	}
	if err := k.mergeUsr(); err != nil {
		return nil, err
	}
	if err := k.locate(); err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(k, "", "  ")
	if err := os.WriteFile(meta, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return k, nil
}

// mergeUsr gives a tree that only has usr/lib/modules (sid's 7.x packages)
// a lib -> usr/lib link: virtme-ng looks for a kernel's modules in
// <root>/lib/modules/<release>, <root> being the folder above the image's
// lib/modules, and without them it boots with no initramfs and no 9p driver
// ("VFS: Unable to mount root fs").
func (k *Kernel) mergeUsr() error {
	if _, err := os.Lstat(filepath.Join(k.Tree, "lib")); err == nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(k.Tree, "usr", "lib", "modules")); err != nil {
		return nil
	}
	return os.Symlink("usr/lib", filepath.Join(k.Tree, "lib"))
}

// locate finds vmlinuz and the modules inside the unpacked tree (Debian moved
// both from / to /usr in newer packages).
func (k *Kernel) locate() error {
	// sid's linux-binary-<release> (7.x) puts it next to the modules.
	for _, f := range []string{
		filepath.Join(k.Tree, "boot", "vmlinuz-"+k.Release),
		filepath.Join(k.Tree, "usr", "lib", "modules", k.Release, "vmlinuz"),
		filepath.Join(k.Tree, "lib", "modules", k.Release, "vmlinuz"),
	} {
		if _, err := os.Stat(f); err == nil {
			k.Vmlinuz = f
			break
		}
	}
	if k.Vmlinuz == "" {
		return fmt.Errorf("%s holds no vmlinuz-%s (not a kernel image package?)", k.Tree, k.Release)
	}
	for _, p := range []string{"lib/modules", "usr/lib/modules"} {
		d := filepath.Join(k.Tree, p, k.Release)
		if _, err := os.Stat(d); err == nil {
			k.ModulesDir = d
			return nil
		}
	}
	return fmt.Errorf("%s holds no modules for %s", k.Tree, k.Release)
}

func readKernel(path string) (*Kernel, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var k Kernel
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, err
	}
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		return nil, err
	}
	return &k, nil
}

// ModulesRoot is where virtme-ng looks for a kernel's modules on the host.
var ModulesRoot = "/lib/modules"

const stampName = ".ebpf-net-obs-vmtest"

// InstallModules copies the kernel's modules to /lib/modules/<release> and
// runs depmod, unless the same package version is already installed there.
// A /lib/modules/<release> that vmtest did not create (the host's own kernel,
// or one installed by dpkg) is left alone.
func (c Cache) InstallModules(ctx context.Context, k *Kernel) error {
	dst := filepath.Join(ModulesRoot, k.Release)
	stamp := filepath.Join(dst, stampName)
	if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == k.Package+"="+k.PackageVersion {
		return nil
	}
	if _, err := os.Stat(dst); err == nil {
		if _, err := os.Stat(stamp); errors.Is(err, os.ErrNotExist) {
			if _, err := os.Stat(filepath.Join(dst, "modules.dep")); err == nil {
				c.Logf("%s exists and was not made by vmtest; using it as is", dst)
				return nil
			}
		}
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("copying modules to %s needs root (run vmtest as root)", dst)
	}
	c.Logf("installing modules to %s", dst)
	_ = os.RemoveAll(dst)
	if err := os.MkdirAll(ModulesRoot, 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", k.ModulesDir, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("cp -a %s %s: %v\n%s", k.ModulesDir, dst, err, tail(out, 10))
	}
	if out, err := exec.CommandContext(ctx, "depmod", k.Release).CombinedOutput(); err != nil {
		return fmt.Errorf("depmod %s: %v\n%s", k.Release, err, tail(out, 10))
	}
	return os.WriteFile(stamp, []byte(k.Package+"="+k.PackageVersion+"\n"), 0o644)
}
