package guest

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain/path-1.0": "plain/path-1.0",
		"":               "''",
		"a b":            "'a b'",
		"it's":           `'it'\''s'`,
		"$HOME":          "'$HOME'",
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestJoinCommand(t *testing.T) {
	if got := JoinCommand([]string{"uname -r; echo hi"}); got != "uname -r; echo hi" {
		t.Errorf("single argument must stay a shell line: %q", got)
	}
	if got := JoinCommand([]string{"go", "test", "-run", "Test A"}); got != "go test -run 'Test A'" {
		t.Errorf("argv = %q", got)
	}
}

// The script must really pass the exit status through: run it with bash
// here (prelude mounts fail harmlessly when not root or already mounted) —
// but never the guest prelude on the host, so only its command part.
func TestScriptExitStatus(t *testing.T) {
	dir := t.TempDir()
	status := filepath.Join(dir, "exit-status")
	opts := Options{Command: "echo out; exit 7", Cwd: dir, Env: []string{"FOO=a b"}}
	s := Script(opts, status)
	for _, want := range []string{"mount -t tracefs", "mount -t bpf", "GOPROXY=off", "export 'FOO=a b'", "cd " + dir, "echo $rc > " + status} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	if !strings.Contains(s, "echo 1 > /proc/sys/kernel/bpf_stats_enabled") {
		t.Errorf("a TCG guest's script does not hold the BPF statistics on:\n%s", s)
	}
	opts.KVM = true
	if kvm := Script(opts, status); strings.Contains(kvm, "bpf_stats_enabled") {
		t.Errorf("a KVM guest's script holds the BPF statistics on:\n%s", kvm)
	}
	body := s[strings.Index(s, "export 'FOO"):]
	out, err := exec.Command("bash", "-c", body).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("exit = %v, output %q", err, out)
	}
	b, _ := os.ReadFile(status)
	if strings.TrimSpace(string(b)) != "7" {
		t.Errorf("status file = %q", b)
	}
}

func TestVngArgs(t *testing.T) {
	opts := Options{
		Vmlinuz: "/k/vmlinuz", CPUs: 2, Memory: "2G", Cwd: "/work/main",
		StateDir: "/c/runs/x", RWDirs: []string{"/work/main", "/c/gocache"},
	}
	args := VngArgs(opts, "/c/runs/x/guest.sh")
	got := strings.Join(args, " ")
	want := "--run /k/vmlinuz --force-9p --disable-monitor --disable-kvm --cpus 2 --memory 2G " +
		"--rwdir /c/runs/x --rwdir /work/main --rwdir /c/gocache --cwd /work/main --exec bash /c/runs/x/guest.sh"
	if got != want {
		t.Errorf("vng args\n got %s\nwant %s", got, want)
	}
	opts.KVM = true
	if slices.Contains(VngArgs(opts, "s"), "--disable-kvm") {
		t.Error("--disable-kvm with KVM on")
	}
	if slices.Contains(VngArgs(opts, "s"), "--verbose") {
		t.Error("--verbose without KernelLog")
	}
	opts.KernelLog = true
	if a := strings.Join(VngArgs(opts, "s"), " "); !strings.HasSuffix(a, " --verbose --append loglevel=6 --exec bash s") {
		t.Errorf("KernelLog: want --verbose --append loglevel=6 before --exec: %s", a)
	}
}

func TestProjectRoot(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := ProjectRoot(sub); got != root {
		t.Errorf("ProjectRoot = %q, want %q", got, root)
	}
}
