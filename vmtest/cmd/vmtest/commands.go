package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/internal/cliflag"
	"github.com/ebpf-net-obs/ebpf-net-obs/vmtest/features"
	"github.com/ebpf-net-obs/ebpf-net-obs/vmtest/guest"
	"github.com/ebpf-net-obs/ebpf-net-obs/vmtest/kernels"
	"github.com/ebpf-net-obs/ebpf-net-obs/vmtest/matrix"
)

var start = time.Now()

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vmtest [%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

func fail(err error) int {
	fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
	return 1
}

// parseFlags parses fs: exit 2 after a bad flag, 0 after --help.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	err := cliflag.Parse(fs, args, os.Stderr)
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		return 0, false
	default:
		fmt.Fprintln(os.Stderr, err)
		return 2, false
	}
}

func newFlags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("vmtest "+name, flag.ContinueOnError)
	cache := fs.String("cache-dir", kernels.DefaultCacheDir(), "where kernels, debs and apt lists are cached")
	return fs, cache
}

func cmdSetup(ctx context.Context, args []string) int {
	fs, cacheDir := newFlags("setup")
	if code, ok := parseFlags(fs, args); !ok {
		return code
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
	if code, ok := parseFlags(fs, args); !ok {
		return code
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
	if code, ok := parseFlags(fs, args); !ok {
		return code
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
	kernelLog := fs.Bool("kernel-log", false, "also show the guest kernel's messages (notices and worse: warnings, oopses, OOM kills) on stderr")
	var rw stringList
	fs.Var(&rw, "rwdir", "extra host directory the guest may write (repeatable)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
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
	// The host filesystem is read-only in the guest: go commands there need
	// a writable build cache.
	env := passEnv()
	if os.Getenv("GOCACHE") == "" {
		gocache := guest.GoCache(ctx, filepath.Join(*cacheDir, "gocache-guest"))
		env = append(env, "GOCACHE="+gocache)
		rw = append(rw, gocache)
	}
	res, err := guest.Run(ctx, guest.Options{
		Vmlinuz: p.Kernel.Vmlinuz, Release: p.Kernel.Release,
		Command: guest.JoinCommand(argv), Timeout: *timeout,
		CPUs: *cpus, Memory: *memory, KVM: p.KVM.Works,
		Cwd: wd, RWDirs: append([]string{guest.ProjectRoot(wd)}, rw...), StateDir: state,
		Env: env, KernelLog: *kernelLog,
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

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
func cmdMatrix(ctx context.Context, args []string) int {
	fs, cacheDir := newFlags("matrix")
	out := fs.String("out", "results/kernels", "result folder")
	kernelList := fs.String("kernels", strings.Join(matrix.DefaultKernels, ","), "comma-separated kernel version prefixes (empty: host only, with --include-host)")
	includeHost := fs.Bool("include-host", false, "also run everything on the host's own kernel")
	var testCmds stringList
	fs.Var(&testCmds, "test-cmd", "test command run in each kernel (repeatable; default: "+strings.Join(matrix.DefaultTestCmds, "; ")+")")
	noTests := fs.Bool("no-tests", false, "run no test commands")
	noBench := fs.Bool("no-bench", false, "skip the bench run")
	goTestInGuest := fs.Bool("go-test-in-guest", false, "run `go test` commands as they are in the guest (slow under TCG) instead of host-compiled test binaries")
	benchCmd := fs.String("bench-cmd", matrix.DefaultBenchCmd, "bench command; {bench} is bin/bench, {out} the kernel's result folder")
	benchBin := fs.String("bench", "", "bench binary (default PROJECT/bin/bench, built when missing)")
	cpus := fs.Int("cpus", 2, "guest CPUs")
	memory := fs.String("memory", "2G", "guest memory")
	kvm := fs.String("kvm", guest.KVMAuto, "auto (probe once, cached), on, or off (TCG)")
	testsTimeout := fs.Duration("tests-timeout", 30*time.Minute, "limit for each test command inside a kernel")
	benchTimeout := fs.Duration("bench-timeout", 20*time.Minute, "limit for the bench inside a kernel")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	wd, _ := os.Getwd()
	cfg := matrix.Config{
		Out: *out, IncludeHost: *includeHost, CacheDir: *cacheDir,
		Project: guest.ProjectRoot(wd), VMTest: self, Bench: *benchBin,
		TestCmds: testCmds, BenchCmd: *benchCmd, NoBench: *noBench, GoTestInGuest: *goTestInGuest,
		TestsTimeout: *testsTimeout, BenchTimeout: *benchTimeout,
		CPUs: *cpus, Memory: *memory, KVM: *kvm, Log: logf,
	}
	if *noTests {
		cfg.TestCmds = []string{}
	}
	for _, k := range strings.Split(*kernelList, ",") {
		if k = strings.TrimSpace(k); k != "" {
			cfg.Kernels = append(cfg.Kernels, k)
		}
	}
	if len(cfg.Kernels) == 0 && !cfg.IncludeHost {
		return fail(fmt.Errorf("no kernels: give --kernels or --include-host"))
	}
	sums, err := matrix.Run(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	code := 0
	for _, s := range sums {
		if !s.OK() {
			code = 1
		}
	}
	return code
}

func cmdReport(args []string) int {
	fs := flag.NewFlagSet("vmtest report", flag.ContinueOnError)
	out := fs.String("out", "results/kernels", "result folder of earlier matrix runs")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	sums, err := matrix.LoadSummaries(*out)
	if err != nil {
		return fail(err)
	}
	if len(sums) == 0 {
		return fail(fmt.Errorf("no %s/*/summary.json: run `vmtest matrix` first", *out))
	}
	if err := matrix.WriteReport(*out, sums); err != nil {
		return fail(err)
	}
	logf("wrote %s and comparison.png from %d kernels", filepath.Join(*out, "report.md"), len(sums))
	return 0
}
