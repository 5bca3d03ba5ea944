package matrix

import (
	"bytes"
	"context"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGoTestPatterns(t *testing.T) {
	got := goTestPatterns("go test -count=1 -run TestX ./agent/... ./bpf/...")
	if strings.Join(got, " ") != "./agent/... ./bpf/..." {
		t.Errorf("patterns = %v", got)
	}
	if goTestPatterns("bin/bench run") != nil {
		t.Error("a non-go-test command has patterns")
	}
}

func TestTestAvailability(t *testing.T) {
	project := t.TempDir()
	if err := os.WriteFile(filepath.Join(project, "go.mod"), []byte("module example.com/p\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if why := testAvailability(ctx, project, "go test ./agent/..."); !strings.Contains(why, "no Go packages match ./agent/...") {
		t.Errorf("missing packages: %q", why)
	}
	if err := os.MkdirAll(filepath.Join(project, "agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(project, "agent", "a.go"), []byte("package agent\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if why := testAvailability(ctx, project, "go test ./agent/..."); why != "" {
		t.Errorf("existing package reported unavailable: %q", why)
	}
	if why := testAvailability(ctx, project, "bin/nothing --x"); !strings.Contains(why, "does not exist") {
		t.Errorf("missing binary: %q", why)
	}
	if why := testAvailability(ctx, project, "true"); why != "" {
		t.Errorf("true: %q", why)
	}
}

func TestRWDirsDropsNested(t *testing.T) {
	got := rwDirs("/work/main", "/work/main/results/kernels", "/root/.cache/go-build", "/work/mainly")
	want := "/work/main /root/.cache/go-build /work/mainly"
	if strings.Join(got, " ") != want {
		t.Errorf("rwDirs = %v, want %s", got, want)
	}
}

// The step script runs here with bash exactly as it would in a guest; its
// .steps record becomes the summary's steps.
func TestStepScriptAndCollect(t *testing.T) {
	dir := t.TempDir()
	steps := []plannedStep{
		{name: "features", command: "f", shell: "echo '{\"kernel\":\"k\",\"missing\":[\"map_type/bloom_filter\"]}' > " + filepath.Join(dir, "features.json"), timeout: time.Minute},
		{name: "tests", command: "t", shell: "echo testing >> " + filepath.Join(dir, "tests.log") + "; exit 3", timeout: time.Minute},
		{name: "slow", command: "s", shell: "sleep 30", timeout: time.Second},
		{name: "bench", command: "b", unavailable: "no bin/bench"},
	}
	out, err := runBash(t, stepScript(dir, steps))
	if err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	s := &Summary{}
	collect(s, dir, steps)
	want := map[string]string{"features": StatusPass, "tests": StatusFail, "slow": StatusTimeout, "bench": StatusNotAvailable}
	for name, status := range want {
		st := s.Step(name)
		if st == nil || st.Status != status {
			t.Errorf("step %s = %+v, want %s", name, st, status)
		}
	}
	if st := s.Step("tests"); st.ExitCode != 3 || st.Seconds <= 0 {
		t.Errorf("tests step = %+v", st)
	}
	if strings.Join(s.FeaturesMissing, ",") != "map_type/bloom_filter" {
		t.Errorf("FeaturesMissing = %v", s.FeaturesMissing)
	}
	if s.OK() {
		t.Error("a failed step must make the summary not OK")
	}
}

func runBash(t *testing.T, script string) (string, error) {
	t.Helper()
	var buf bytes.Buffer
	cmd := osexec.Command("bash", "-c", script)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}

// WriteReport must cope with a kernel that failed to fetch, one with only
// features and one with bench results, and always draw the figure.
func TestWriteReport(t *testing.T) {
	out := t.TempDir()
	feat := func(rel string, bloom bool) {
		b := `{"schema_version":1,"kernel":"` + rel + `","checks":[` +
			`{"category":"map_type","name":"hash","available":true},` +
			`{"category":"map_type","name":"bloom_filter","available":` + map[bool]string{true: "true", false: "false"}[bloom] + `},` +
			`{"category":"transport","name":"ringbuf","available":true}]}`
		if err := os.MkdirAll(filepath.Join(out, rel, "bench"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, rel, "features.json"), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	feat("5.10.0-46-amd64", false)
	feat("6.1.0-56-amd64", true)
	bench := `{"meta":{"kernel":"6.1.0-56-amd64"},"cells":[` +
		`{"workload":"crr","transport":"ringbuf","map_type":"hash","sample_rate":1,"throughput_overhead_pct":4.5,"bpf_ns_per_run":{"inet_sock_set_state":310,"sockops":120}},` +
		`{"workload":"crr","transport":"perf","map_type":"hash","sample_rate":"1","throughput_overhead_pct":6.1,"bpf_ns_per_run":{"inet_sock_set_state":350}}]}`
	if err := os.WriteFile(filepath.Join(out, "6.1.0-56-amd64", "bench", "results.json"), []byte(bench), 0o644); err != nil {
		t.Fatal(err)
	}
	sums := []*Summary{
		{Requested: "5.10", Release: "5.10.0-46-amd64", Accel: "tcg", Steps: []Step{{Name: "features", Status: StatusPass}, {Name: "bench", Status: StatusNotAvailable, Command: "bin/bench run", Detail: "no bin/bench"}}},
		{Requested: "6.1", Release: "6.1.0-56-amd64", Accel: "tcg", BenchResults: "bench/results.json", Steps: []Step{{Name: "features", Status: StatusPass}, {Name: "bench", Status: StatusPass}}},
		{Requested: "9.9", Error: "no linux-image-9.9*-amd64[-unsigned] package in the index"},
	}
	if err := WriteReport(out, sums); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| 5.10.0-46-amd64 |", "map_type/bloom_filter | **no** | yes |", "2 further checks",
		"**9.9**: no linux-image-9.9", "not available (no bin/bench)", "| crr | ringbuf | hash | 1 | 4.50 | inet_sock_set_state 310, sockops 120 |",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	png, err := os.ReadFile(filepath.Join(out, "comparison.png"))
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("comparison.png: %v (%d bytes)", err, len(png))
	}
}

func TestWriteReportNothing(t *testing.T) {
	out := t.TempDir()
	if err := WriteReport(out, []*Summary{{Requested: "6.1", Error: "offline"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "comparison.png")); err != nil {
		t.Error(err)
	}
}

// A host-only matrix runs the whole pipeline without a VM.
func TestRunHostOnly(t *testing.T) {
	project := t.TempDir()
	out := filepath.Join(t.TempDir(), "kernels")
	sums, err := Run(context.Background(), Config{
		Out: out, IncludeHost: true, Kernels: []string{}, CacheDir: t.TempDir(), Project: project,
		VMTest: "/bin/true", TestCmds: []string{"echo hello-from-tests"}, BenchCmd: "{bench} run",
		Bench: filepath.Join(project, "bin", "bench"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 1 || !sums[0].Host {
		t.Fatalf("summaries = %+v", sums)
	}
	s := sums[0]
	if st := s.Step("tests"); st == nil || st.Status != StatusPass {
		t.Errorf("tests step = %+v", st)
	}
	if st := s.Step("bench"); st == nil || st.Status != StatusNotAvailable {
		t.Errorf("bench step = %+v (no bench binary or source: not available)", st)
	}
	log, _ := os.ReadFile(filepath.Join(out, s.Release, "tests.log"))
	if !strings.Contains(string(log), "hello-from-tests") {
		t.Errorf("tests.log = %q", log)
	}
	for _, f := range []string{"summary.json", "../report.md", "../comparison.png"} {
		if _, err := os.Stat(filepath.Join(out, s.Release, f)); err != nil {
			t.Error(err)
		}
	}
}

func TestSplitGoTest(t *testing.T) {
	pats, build, test, ok := splitGoTest("go test -count=1 -race -run TestX -v -tags=integration ./agent/... ./bpf/...")
	if !ok {
		t.Fatal("not split")
	}
	if strings.Join(pats, " ") != "./agent/... ./bpf/..." || strings.Join(build, " ") != "-race -tags=integration" ||
		strings.Join(test, " ") != "-test.count=1 -test.run=TestX -test.v" {
		t.Errorf("pats %v build %v test %v", pats, build, test)
	}
	for _, bad := range []string{"go test -json ./...", "go vet ./...", "go test -count=1"} {
		if _, _, _, ok := splitGoTest(bad); ok {
			t.Errorf("%q split; want it run as is", bad)
		}
	}
}

func TestBinaryTestShell(t *testing.T) {
	dir := t.TempDir()
	pass := filepath.Join(dir, "pass.test")
	fail := filepath.Join(dir, "fail.test")
	if err := os.WriteFile(pass, []byte("#!/bin/sh\necho args: \"$@\"; pwd\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fail, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sh := binaryTestShell([]testPackage{
		{importPath: "x/pass", dir: dir, binary: pass},
		{importPath: "x/fail", dir: dir, binary: fail},
		{importPath: "x/broken", buildError: "undefined: Foo"},
	}, []string{"-test.count=1"})
	out, err := runBash(t, sh)
	if err == nil {
		t.Error("a failing package must fail the step")
	}
	for _, want := range []string{"args: -test.count=1", dir, "ok  \tx/pass", "FAIL\tx/fail", "undefined: Foo", "FAIL\tx/broken [build failed on the host]"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestLoadSummariesOrder(t *testing.T) {
	out := t.TempDir()
	for _, s := range []*Summary{{Release: "6.12.118+deb13-amd64"}, {Release: "5.10.0-46-amd64"}, {Release: "6.18.44-fc", Host: true}, {Release: "6.1.0-56-amd64"}, {Release: "7.2.13+deb14-amd64"}} {
		if err := writeJSON(filepath.Join(out, s.Release, "summary.json"), s); err != nil {
			t.Fatal(err)
		}
	}
	sums, err := LoadSummaries(out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range sums {
		got = append(got, s.Release)
	}
	want := "6.18.44-fc 5.10.0-46-amd64 6.1.0-56-amd64 6.12.118+deb13-amd64 7.2.13+deb14-amd64"
	if strings.Join(got, " ") != want {
		t.Errorf("order = %v", got)
	}
}
