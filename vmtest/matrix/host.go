package matrix

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// findBench returns the bench binary, building it when the project has its
// source but no binary yet; the second result says why it is not available.
func findBench(ctx context.Context, cfg Config) (path, missing string) {
	if !strings.Contains(cfg.BenchCmd, "{bench}") {
		return "", "" // a custom bench command names its own binary
	}
	path = cfg.Bench
	if path == "" {
		path = filepath.Join(cfg.Project, "bin", "bench")
	}
	if isExecutable(path) {
		return path, ""
	}
	src := filepath.Join(cfg.Project, "bench", "cmd", "bench")
	if _, err := os.Stat(src); err != nil {
		return path, fmt.Sprintf("no %s and no bench source at %s", path, src)
	}
	cfg.Log("building %s", path)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "./bench/cmd/bench")
	cmd.Dir = cfg.Project
	if out, err := cmd.CombinedOutput(); err != nil {
		return path, fmt.Sprintf("go build ./bench/cmd/bench failed: %v: %s", err, firstLine(string(out)))
	}
	return path, ""
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// goTestPatterns returns the package patterns of a `go test` command line
// (nil when it is not one).
func goTestPatterns(cmd string) []string {
	f := strings.Fields(cmd)
	if len(f) < 2 || f[0] != "go" || f[1] != "test" {
		return nil
	}
	var pats []string
	for _, a := range f[2:] {
		if strings.HasPrefix(a, ".") || strings.Contains(a, "...") || strings.HasPrefix(a, "github.com/") {
			pats = append(pats, a)
		}
	}
	return pats
}

// testAvailability says why a test command cannot run ("" when it can): a
// `go test` whose patterns match no package yet (the packages are being
// written), or a program that does not exist.
func testAvailability(ctx context.Context, project, cmd string) string {
	if pats := goTestPatterns(cmd); pats != nil {
		args := append([]string{"list", "-e", "-f", "{{if .Name}}{{.ImportPath}}{{end}}"}, pats...)
		c := exec.CommandContext(ctx, "go", args...)
		c.Dir = project
		out, _ := c.Output()
		if strings.TrimSpace(string(out)) == "" {
			return fmt.Sprintf("no Go packages match %s yet", strings.Join(pats, " "))
		}
		return ""
	}
	f := strings.Fields(cmd)
	if len(f) == 0 {
		return "empty command"
	}
	prog := f[0]
	if strings.Contains(prog, "/") {
		if !filepath.IsAbs(prog) {
			prog = filepath.Join(project, prog)
		}
		if !isExecutable(prog) {
			return prog + " does not exist"
		}
		return ""
	}
	if _, err := exec.LookPath(prog); err != nil {
		return prog + " is not on PATH"
	}
	return ""
}

// prewarm compiles the `go test` commands' packages on the host into the
// guests' build cache, so a guest under TCG does not spend its time
// compiling (it only links and runs). `-exec true` builds without running.
func prewarm(ctx context.Context, cfg Config, gocache string, progress func(string, ...any)) {
	if err := os.MkdirAll(gocache, 0o755); err != nil {
		return
	}
	for _, tc := range cfg.TestCmds {
		f := strings.Fields(tc)
		if _, done := cfg.compiled[tc]; done || goTestPatterns(tc) == nil || testAvailability(ctx, cfg.Project, tc) != "" {
			continue
		}
		progress("compiling tests on the host for the guest's cache: %s", tc)
		args := append([]string{"test", "-exec", "true"}, f[2:]...)
		pctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		c := exec.CommandContext(pctx, "go", args...)
		c.Dir = cfg.Project
		c.Env = append(os.Environ(), "GOCACHE="+gocache)
		if out, err := c.CombinedOutput(); err != nil {
			progress("host compile of %q failed (the guest will report it): %s", tc, firstLine(string(out)))
		}
		cancel()
	}
}
