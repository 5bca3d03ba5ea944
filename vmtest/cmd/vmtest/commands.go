package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/vmtest/features"
	"github.com/ebpf-net-obs/ebpf-net-obs/vmtest/guest"
	"github.com/ebpf-net-obs/ebpf-net-obs/vmtest/kernels"
)

var start = time.Now()

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vmtest [%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

func fail(err error) int {
	fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
	return 1
}

func newFlags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("vmtest "+name, flag.ContinueOnError)
	cache := fs.String("cache-dir", kernels.DefaultCacheDir(), "where kernels, debs and apt lists are cached")
	return fs, cache
}

func cmdSetup(ctx context.Context, args []string) int {
	fs, cacheDir := newFlags("setup")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cache := kernels.Cache{Dir: *cacheDir, Log: logf}
	if err := guest.Setup(ctx, cache); err != nil {
		return fail(err)
	}
	logf("setup complete: qemu-system-x86, udev, virtme-ng present")
	return 0
}

func cmdFetch(ctx context.Context, args []string) int {
	fs, cacheDir := newFlags("fetch")
	version := fs.String("kernel", "", "kernel version prefix (5.10, 6.1, 6.12, 7)")
	suite := fs.String("suite", "", "Debian suite to search (default: by version)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *version == "" {
		return fail(fmt.Errorf("fetch needs --kernel VERSION"))
	}
	cache := kernels.Cache{Dir: *cacheDir, Log: logf}
	k, err := cache.Fetch(ctx, *version, *suite)
	if err != nil {
		return fail(err)
	}
	if err := cache.InstallModules(ctx, k); err != nil {
		return fail(err)
	}
	fmt.Printf("%s\t%s\t%s\t%s\n", k.Release, k.Package, k.PackageVersion, k.Vmlinuz)
	return 0
}

func cmdFeatures(_ context.Context, args []string) int {
	fs := flag.NewFlagSet("vmtest features", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the stable JSON report")
	out := fs.String("out", "", "also write the JSON report to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	r := features.Probe(features.Options{MountTracefs: os.Geteuid() == 0})
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return fail(err)
		}
		if err := r.WriteJSON(f); err != nil {
			return fail(err)
		}
		if err := f.Close(); err != nil {
			return fail(err)
		}
	}
	var err error
	if *asJSON {
		err = r.WriteJSON(os.Stdout)
	} else {
		err = r.WriteText(os.Stdout)
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

func cmdRun(ctx context.Context, args []string) int {
	fs, cacheDir := newFlags("run")
	version := fs.String("kernel", "", "kernel version prefix (5.10, 6.1, 6.12, 7) or full release")
	suite := fs.String("suite", "", "Debian suite to search (default: by version)")
	timeout := fs.Duration("timeout", 10*time.Minute, "kill the guest after this long (exit 124)")
	cpus := fs.Int("cpus", 2, "guest CPUs")
	memory := fs.String("memory", "2G", "guest memory (qemu -m syntax)")
	kvm := fs.String("kvm", guest.KVMAuto, "auto (probe once, cached), on, or off (TCG)")
	var rw stringList
	fs.Var(&rw, "rwdir", "extra host directory the guest may write (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	argv := fs.Args()
	if *version == "" || len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "usage: vmtest run --kernel VERSION [--timeout D] [--cpus N] [--memory SIZE] -- CMD...")
		return 2
	}
	cache := kernels.Cache{Dir: *cacheDir, Log: logf}
	p, err := guest.Prepare(ctx, cache, *version, *suite, *kvm)
	if err != nil {
		return fail(err)
	}
	wd, _ := os.Getwd()
	accel := "TCG"
	if p.KVM.Works {
		accel = "KVM"
	}
	logf("booting %s (%s; %s) with %d CPUs, %s", p.Kernel.Release, p.Kernel.Package, accel, *cpus, *memory)
	state, err := os.MkdirTemp(filepath.Join(*cacheDir, "runs"), "run-")
	if err != nil {
		if err := os.MkdirAll(filepath.Join(*cacheDir, "runs"), 0o755); err != nil {
			return fail(err)
		}
		if state, err = os.MkdirTemp(filepath.Join(*cacheDir, "runs"), "run-"); err != nil {
			return fail(err)
		}
	}
	defer os.RemoveAll(state)
	res, err := guest.Run(ctx, guest.Options{
		Vmlinuz: p.Kernel.Vmlinuz, Release: p.Kernel.Release,
		Command: guest.JoinCommand(argv), Timeout: *timeout,
		CPUs: *cpus, Memory: *memory, KVM: p.KVM.Works,
		Cwd: wd, RWDirs: append([]string{guest.ProjectRoot(wd)}, rw...), StateDir: state,
		Env: passEnv(),
	})
	if err != nil {
		return fail(err)
	}
	if res.Message != "" {
		fmt.Fprintf(os.Stderr, "vmtest: %s\n", res.Message)
	}
	logf("guest %s exited %d after %.1fs", p.Kernel.Release, res.ExitCode, res.Elapsed.Seconds())
	return res.ExitCode
}

// passEnv forwards the variables that change how tests behave.
func passEnv() []string {
	var env []string
	for _, k := range []string{"CI", "GOFLAGS", "GOCACHE", "GOMODCACHE", "GOPATH"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

type stringList []string

func (s *stringList) String() string                   { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error               { *s = append(*s, v); return nil }
func cmdMatrix(ctx context.Context, args []string) int { return 2 }
