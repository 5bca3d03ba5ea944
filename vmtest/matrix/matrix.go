package matrix

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/vmtest/features"
	"github.com/ebpf-net-obs/ebpf-net-obs/vmtest/guest"
	"github.com/ebpf-net-obs/ebpf-net-obs/vmtest/kernels"
)

// DefaultKernels is what `make vmtest` covers besides the host.
var DefaultKernels = []string{"5.10", "6.1", "6.12", "7"}

// DefaultTestCmds are the observer's privileged tests. They are run where
// their packages exist and recorded as "not available" where not.
var DefaultTestCmds = []string{"go test -count=1 ./agent/... ./bpf/..."}

// DefaultBenchCmd is the bench smoke run; {bench} and {out} are replaced by
// the bench binary and the kernel's result folder.
const DefaultBenchCmd = "{bench} run --profile smoke --out {out}/bench"

// Config is one matrix run.
type Config struct {
	Out         string // results/kernels
	Kernels     []string
	IncludeHost bool
	CacheDir    string
	Project     string // the module root, writable in guests
	VMTest      string // this binary (runs `features` inside)
	Bench       string // bin/bench
	TestCmds    []string
	BenchCmd    string // "" = DefaultBenchCmd
	NoBench     bool
	// GoTestInGuest runs `go test` commands as they are inside the guest
	// instead of compiling them on the host first (see testbin.go).
	GoTestInGuest bool
	compiled      map[string]compiledTests
	// Per-step limits inside a kernel; a boot is killed after their sum
	// plus BootAllowance.
	FeaturesTimeout, TestsTimeout, BenchTimeout, BootAllowance time.Duration
	CPUs                                                       int
	Memory                                                     string
	KVM                                                        string
	Log                                                        func(string, ...any)
}

func (c *Config) defaults() {
	if len(c.Kernels) == 0 && !c.IncludeHost {
		c.Kernels = DefaultKernels
	}
	if c.TestCmds == nil {
		c.TestCmds = DefaultTestCmds
	}
	if c.BenchCmd == "" {
		c.BenchCmd = DefaultBenchCmd
	}
	if c.FeaturesTimeout == 0 {
		c.FeaturesTimeout = 5 * time.Minute
	}
	if c.TestsTimeout == 0 {
		c.TestsTimeout = 30 * time.Minute
	}
	if c.BenchTimeout == 0 {
		c.BenchTimeout = 20 * time.Minute
	}
	if c.BootAllowance == 0 {
		c.BootAllowance = 5 * time.Minute
	}
	if c.CPUs == 0 {
		c.CPUs = 2
	}
	if c.Memory == "" {
		c.Memory = "2G"
	}
	if c.Log == nil {
		c.Log = func(string, ...any) {}
	}
}

type compiledTests struct {
	pkgs     []testPackage
	testArgs []string
}

// plannedStep is a step decided on the host before booting.
type plannedStep struct {
	name, command, shell string
	timeout              time.Duration
	unavailable          string // non-empty: not run, recorded as not available
}

// Run executes the matrix and writes every result; it returns the summaries
// in order. A kernel that fails does not stop the others.
func Run(ctx context.Context, cfg Config) ([]*Summary, error) {
	cfg.defaults()
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, err
	}
	out, err := filepath.Abs(cfg.Out)
	if err != nil {
		return nil, err
	}
	cfg.Out = out
	cache := kernels.Cache{Dir: cfg.CacheDir, Log: cfg.Log}
	begin := time.Now()
	targets := append([]string{}, cfg.Kernels...)
	if cfg.IncludeHost {
		targets = append([]string{"host"}, targets...)
	}
	var bench, benchMissing string
	if !cfg.NoBench {
		bench, benchMissing = findBench(ctx, cfg)
	}
	cfg.compiled = map[string]compiledTests{}
	if !cfg.GoTestInGuest {
		for _, tc := range cfg.TestCmds {
			if testAvailability(ctx, cfg.Project, tc) != "" {
				continue
			}
			cfg.Log("compiling test binaries on the host: %s", tc)
			pkgs, args, err := compileTests(ctx, cfg.Project, tc, filepath.Join(cfg.CacheDir, "testbin"))
			if err != nil {
				cfg.Log("could not compile %q on the host (%v): it runs as is in the guests", tc, err)
				continue
			}
			if pkgs != nil {
				cfg.compiled[tc] = compiledTests{pkgs, args}
			}
		}
	}
	var sums []*Summary
	for i, target := range targets {
		if ctx.Err() != nil {
			break
		}
		progress := func(format string, args ...any) {
			cfg.Log("[kernel %d/%d %s, %s elapsed] %s", i+1, len(targets), target,
				time.Since(begin).Round(time.Second), fmt.Sprintf(format, args...))
		}
		var s *Summary
		if target == "host" {
			s = runHost(ctx, cfg, bench, benchMissing, progress)
		} else {
			s = runKernel(ctx, cfg, cache, target, bench, benchMissing, progress)
		}
		if s.Release != "" {
			if err := writeJSON(filepath.Join(cfg.Out, s.Release, "summary.json"), s); err != nil {
				return sums, err
			}
		}
		status := "ok"
		if !s.OK() {
			status = "PROBLEMS"
		}
		progress("done in %.0fs: %s %s", s.TotalSeconds, status, stepLine(s))
		sums = append(sums, s)
		// Keep report.md current, so a long matrix shows what it has so far.
		if err := WriteReport(cfg.Out, sums); err != nil {
			return sums, err
		}
	}
	if err := WriteReport(cfg.Out, sums); err != nil {
		return sums, err
	}
	cfg.Log("matrix done in %s: %s", time.Since(begin).Round(time.Second), filepath.Join(cfg.Out, "report.md"))
	return sums, ctx.Err()
}

func stepLine(s *Summary) string {
	if s.Error != "" {
		return "error: " + s.Error
	}
	var parts []string
	for _, st := range s.Steps {
		parts = append(parts, st.Name+"="+st.Status)
	}
	return strings.Join(parts, " ")
}

func runKernel(ctx context.Context, cfg Config, cache kernels.Cache, version, bench, benchMissing string, progress func(string, ...any)) *Summary {
	s := &Summary{Requested: version, StartedAt: time.Now().UTC().Format(time.RFC3339), CPUs: cfg.CPUs, Memory: cfg.Memory}
	t0 := time.Now()
	progress("fetching")
	p, err := guest.Prepare(ctx, cache, version, "", cfg.KVM)
	if err != nil {
		s.Error = err.Error()
		s.TotalSeconds = time.Since(t0).Seconds()
		return s
	}
	k := p.Kernel
	s.Release, s.Suite, s.Package, s.PackageVersion = k.Release, k.Suite, k.Package, k.PackageVersion
	s.Accel, s.AccelReason = "tcg", p.KVM.Reason
	if p.KVM.Works {
		s.Accel = "kvm"
	}
	dir := filepath.Join(cfg.Out, k.Release)
	if err := resetDir(dir); err != nil {
		s.Error = err.Error()
		return s
	}
	steps := planSteps(ctx, cfg, dir, bench, benchMissing)
	gocache := guest.GoCache(ctx, filepath.Join(cfg.CacheDir, "gocache-guest"))
	prewarm(ctx, cfg, gocache, progress)
	var limit time.Duration = cfg.BootAllowance
	for _, st := range steps {
		limit += st.timeout
	}
	progress("booting %s under %s (limit %s)", k.Release, strings.ToUpper(s.Accel), limit)
	logf, err := os.Create(filepath.Join(dir, "console.log"))
	if err != nil {
		s.Error = err.Error()
		return s
	}
	defer logf.Close()
	hostStart := time.Now()
	res, err := guest.Run(ctx, guest.Options{
		Vmlinuz: k.Vmlinuz, Release: k.Release, Command: stepScript(dir, steps),
		Timeout: limit, CPUs: cfg.CPUs, Memory: cfg.Memory, KVM: p.KVM.Works,
		Cwd: cfg.Project, RWDirs: rwDirs(cfg.Project, cfg.Out, gocache),
		StateDir:  filepath.Join(cfg.CacheDir, "runs", "matrix-"+k.Release),
		Env:       append(passEnv(), "GOCACHE="+gocache, "TMPDIR=/tmp"),
		KernelLog: true, // a lost guest's oops, panic or OOM kill lands in console.log
		Stdout:    logf, Stderr: logf,
	})
	s.TotalSeconds = time.Since(t0).Seconds()
	if err != nil {
		s.Error = err.Error()
		return s
	}
	s.ExitCode, s.TimedOut = res.ExitCode, res.TimedOut
	if res.Message != "" {
		s.Error = res.Message + " (console output: console.log)"
	}
	if st, err := readGuestStart(dir); err == nil {
		s.BootSeconds = st.Sub(hostStart).Seconds()
	}
	collect(s, dir, steps)
	return s
}

func runHost(ctx context.Context, cfg Config, bench, benchMissing string, progress func(string, ...any)) *Summary {
	r := features.Probe(features.Options{})
	s := &Summary{Requested: "host", Release: r.Kernel, Host: true, Accel: "host", StartedAt: time.Now().UTC().Format(time.RFC3339)}
	t0 := time.Now()
	dir := filepath.Join(cfg.Out, s.Release)
	if err := resetDir(dir); err != nil {
		s.Error = err.Error()
		return s
	}
	steps := planSteps(ctx, cfg, dir, bench, benchMissing)
	var limit time.Duration = time.Minute
	for _, st := range steps {
		limit += st.timeout
	}
	progress("running on the host kernel %s", s.Release)
	hctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(hctx, "bash", "-c", guest.MountPrelude+stepScript(dir, steps))
	cmd.Dir = cfg.Project
	logf, err := os.Create(filepath.Join(dir, "console.log"))
	if err != nil {
		s.Error = err.Error()
		return s
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Run()
	s.TotalSeconds = time.Since(t0).Seconds()
	if hctx.Err() == context.DeadlineExceeded {
		s.TimedOut, s.ExitCode = true, guest.ExitTimeout
		s.Error = fmt.Sprintf("host run did not finish within %s", limit)
	} else if ee, ok := err.(*exec.ExitError); ok {
		s.ExitCode = ee.ExitCode()
	}
	collect(s, dir, steps)
	return s
}

// resetDir empties a kernel's result folder of the files this run writes.
func resetDir(dir string) error {
	for _, f := range []string{"features.json", "features.err", "tests.log", "bench", "bench.log", "summary.json", "console.log", ".steps", ".guest-start"} {
		if err := os.RemoveAll(filepath.Join(dir, f)); err != nil {
			return err
		}
	}
	return os.MkdirAll(dir, 0o755)
}

// planSteps decides, on the host, what runs in the kernel.
func planSteps(ctx context.Context, cfg Config, dir, bench, benchMissing string) []plannedStep {
	q := guest.ShellQuote
	steps := []plannedStep{{
		name: "features", command: "vmtest features --json",
		shell:   fmt.Sprintf("%s features --json --out %s >/dev/null 2>%s", q(cfg.VMTest), q(filepath.Join(dir, "features.json")), q(filepath.Join(dir, "features.err"))),
		timeout: cfg.FeaturesTimeout,
	}}
	testsLog := q(filepath.Join(dir, "tests.log"))
	for i, tc := range cfg.TestCmds {
		st := plannedStep{name: "tests", command: tc, timeout: cfg.TestsTimeout}
		if len(cfg.TestCmds) > 1 {
			st.name = fmt.Sprintf("tests%d", i+1)
		}
		st.unavailable = testAvailability(ctx, cfg.Project, tc)
		st.shell = fmt.Sprintf("{ echo \"### %s\"; %s; } >>%s 2>&1", strings.ReplaceAll(tc, `"`, `\"`), tc, testsLog)
		if c, ok := cfg.compiled[tc]; ok {
			st.shell = fmt.Sprintf("{ echo \"### %s (compiled on the host with go test -c; the binaries run here)\"; %s } >>%s 2>&1",
				strings.ReplaceAll(tc, `"`, `\"`), binaryTestShell(c.pkgs, c.testArgs), testsLog)
		}
		if st.unavailable != "" {
			// Say so in tests.log too, where people look first.
			line := fmt.Sprintf("### %s\nnot available: %s\n", tc, st.unavailable)
			appendFile(filepath.Join(dir, "tests.log"), line)
		}
		steps = append(steps, st)
	}
	b := plannedStep{name: "bench", timeout: cfg.BenchTimeout}
	b.command = strings.NewReplacer("{bench}", "bin/bench", "{out}", "<out>").Replace(cfg.BenchCmd)
	b.shell = strings.NewReplacer("{bench}", q(bench), "{out}", q(dir)).Replace(cfg.BenchCmd) + " >" + q(filepath.Join(dir, "bench.log")) + " 2>&1"
	b.unavailable = benchMissing
	if cfg.NoBench {
		b.unavailable = "skipped (--no-bench)"
	}
	return append(steps, b)
}

func appendFile(path, s string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = io.WriteString(f, s)
}

// stepScript is the bash body that runs the steps in the kernel, each under
// timeout(1), and records "name rc start end" lines in dir/.steps.
func stepScript(dir string, steps []plannedStep) string {
	q := guest.ShellQuote
	var b strings.Builder
	fmt.Fprintf(&b, "date +%%s.%%N > %s\n", q(filepath.Join(dir, ".guest-start")))
	fmt.Fprintf(&b, "STEPS=%s\n: > \"$STEPS\"\n", q(filepath.Join(dir, ".steps")))
	b.WriteString(`step() { local name=$1 limit=$2 s e rc; s=$(date +%s.%N); timeout -k 10 "$limit" bash -c "$3"; rc=$?; e=$(date +%s.%N); echo "$name $rc $s $e" >> "$STEPS"; echo "vmtest step $name: exit $rc"; }` + "\n")
	for _, st := range steps {
		if st.unavailable != "" {
			continue
		}
		fmt.Fprintf(&b, "step %s %d %s\n", st.name, int(st.timeout.Seconds()), q(st.shell))
	}
	b.WriteString("true\n")
	return b.String()
}

// collect turns dir/.steps and the result files into the summary.
func collect(s *Summary, dir string, steps []plannedStep) {
	ran := map[string][3]float64{}
	if b, err := os.ReadFile(filepath.Join(dir, ".steps")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) != 4 {
				continue
			}
			rc, _ := strconv.Atoi(f[1])
			st, _ := strconv.ParseFloat(f[2], 64)
			en, _ := strconv.ParseFloat(f[3], 64)
			ran[f[0]] = [3]float64{float64(rc), st, en}
		}
	}
	for _, p := range steps {
		st := Step{Name: p.name, Command: p.command}
		r, ok := ran[p.name]
		switch {
		case p.unavailable != "":
			st.Status, st.Detail = StatusNotAvailable, p.unavailable
		case !ok:
			st.Status, st.Detail = StatusNotRun, "the kernel ended before this step finished"
		default:
			st.ExitCode, st.Seconds = int(r[0]), r[2]-r[1]
			switch st.ExitCode {
			case 0:
				st.Status = StatusPass
			case 124, 137:
				st.Status, st.Detail = StatusTimeout, fmt.Sprintf("killed after %s", p.timeout)
			default:
				st.Status = StatusFail
			}
		}
		s.Steps = append(s.Steps, st)
	}
	var fr features.Report
	if err := readJSON(filepath.Join(dir, "features.json"), &fr); err == nil {
		s.FeaturesMissing = fr.Missing
	}
	if s.FeaturesMissing == nil {
		s.FeaturesMissing = []string{}
	}
	if _, err := os.Stat(filepath.Join(dir, "bench", "results.json")); err == nil {
		s.BenchResults = "bench/results.json"
	}
	_ = os.Remove(filepath.Join(dir, ".steps"))
	_ = os.Remove(filepath.Join(dir, ".guest-start"))
}

func readGuestStart(dir string) (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(dir, ".guest-start"))
	if err != nil {
		return time.Time{}, err
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		return time.Time{}, err
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
}

func passEnv() []string {
	var env []string
	for _, k := range []string{"CI", "GOFLAGS", "GOMODCACHE", "GOPATH"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// rwDirs drops directories already shared through an earlier one (results
// inside the project need no mount of their own).
func rwDirs(dirs ...string) []string {
	var out []string
	for _, d := range dirs {
		inside := false
		for _, o := range out {
			if rel, err := filepath.Rel(o, d); err == nil && !strings.HasPrefix(rel, "..") {
				inside = true
			}
		}
		if !inside {
			out = append(out, d)
		}
	}
	return out
}
