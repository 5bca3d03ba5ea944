package matrix

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ebpf-net-obs/ebpf-net-obs/vmtest/guest"
)

// Under TCG the go tool itself is the slow part of `go test` in a guest
// (loading and hashing every package over 9p took more than 10 minutes on
// 5.10 before a test ran). So a `go test` command is compiled on the host
// with `go test -c`, one binary per package, and the guest only runs the
// binaries, each in its package's folder as `go test` would.

// testFlags maps go test's test flags to the binary's -test.* flags.
var testFlags = map[string]bool{
	"count": true, "run": true, "skip": true, "v": true, "short": true, "timeout": true,
	"bench": true, "benchtime": true, "failfast": true, "cpu": true, "parallel": true,
}

// buildFlags are passed to `go test -c`.
var buildFlags = map[string]bool{"race": true, "tags": true, "ldflags": true, "gcflags": true, "cover": true, "trimpath": true}

// splitGoTest separates a `go test` command line into package patterns,
// build flags and test-binary flags; ok is false for anything it does not
// understand (the command then runs as is in the guest).
func splitGoTest(cmd string) (pats, build, test []string, ok bool) {
	f := strings.Fields(cmd)
	if len(f) < 3 || f[0] != "go" || f[1] != "test" {
		return nil, nil, nil, false
	}
	for i := 2; i < len(f); i++ {
		a := f[i]
		if !strings.HasPrefix(a, "-") {
			pats = append(pats, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		boolFlag := name == "v" || name == "short" || name == "race" || name == "failfast" || name == "trimpath" || name == "cover"
		if !hasVal && !boolFlag {
			if i+1 >= len(f) {
				return nil, nil, nil, false
			}
			i++
			val, hasVal = f[i], true
		}
		flag := "-" + name
		if hasVal {
			flag += "=" + val
		}
		switch {
		case testFlags[name]:
			test = append(test, "-test."+strings.TrimPrefix(flag, "-"))
		case buildFlags[name]:
			build = append(build, flag)
		default:
			return nil, nil, nil, false
		}
	}
	return pats, build, test, len(pats) > 0
}

// testPackage is one compiled test binary.
type testPackage struct {
	importPath, dir, binary string
	buildError              string
}

// compileTests builds the test binaries of cmd into dir; nil when cmd is
// not a `go test` this can split.
func compileTests(ctx context.Context, project, cmd, dir string) ([]testPackage, []string, error) {
	pats, build, test, ok := splitGoTest(cmd)
	if !ok {
		return nil, nil, nil
	}
	list := exec.CommandContext(ctx, "go", append([]string{"list", "-e", "-f", "{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Dir}}{{end}}"}, pats...)...)
	list.Dir = project
	out, err := list.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("go list %s: %w", strings.Join(pats, " "), err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	var pkgs []testPackage
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		ip, pdir, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		p := testPackage{importPath: ip, dir: pdir, binary: filepath.Join(dir, strings.ReplaceAll(ip, "/", "_")+".test")}
		_ = os.Remove(p.binary)
		c := exec.CommandContext(ctx, "go", append(append([]string{"test", "-c", "-o", p.binary}, build...), ip)...)
		c.Dir = project
		if b, err := c.CombinedOutput(); err != nil {
			p.buildError = strings.TrimSpace(string(b))
			if p.buildError == "" {
				p.buildError = err.Error()
			}
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, test, nil
}

// binaryTestShell is the guest's shell for compiled tests: each binary in
// its package folder, with a go-test-like ok/FAIL line; exit 1 if any failed.
func binaryTestShell(pkgs []testPackage, testArgs []string) string {
	q := guest.ShellQuote
	var b strings.Builder
	b.WriteString("rc=0\n")
	for _, p := range pkgs {
		if p.buildError != "" {
			fmt.Fprintf(&b, "printf '%%s\\n' %s\necho 'FAIL\t%s [build failed on the host]'\nrc=1\n", q(p.buildError), p.importPath)
			continue
		}
		args := make([]string, len(testArgs))
		for i, a := range testArgs {
			args[i] = q(a)
		}
		fmt.Fprintf(&b, "s=$(date +%%s.%%N); (cd %s && %s %s); r=$?; e=$(date +%%s.%%N); t=$(awk -v s=$s -v e=$e 'BEGIN{printf \"%%.1fs\", e-s}')\n", q(p.dir), q(p.binary), strings.Join(args, " "))
		fmt.Fprintf(&b, "if [ $r = 0 ]; then echo \"ok  \t%s\t$t\"; else echo \"FAIL\t%s\t$t (exit $r)\"; rc=1; fi\n", p.importPath, p.importPath)
	}
	b.WriteString("exit $rc\n")
	return b.String()
}
