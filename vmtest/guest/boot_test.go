package guest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
	"github.com/ebpf-net-obs/ebpf-net-obs/vmtest/kernels"
)

// TestBootDebian61 really fetches and boots Debian's 6.1 kernel: output,
// exit status and the timeout kill must all pass through, and with KernelLog
// the guest kernel's own messages too (what a lost guest leaves behind).
func TestBootDebian61(t *testing.T) {
	if testing.Short() {
		t.Skip("VM BOOT TEST NOT RUN under -short: it boots Debian's 6.1 kernel under virtme-ng (about a minute or two under TCG)")
	}
	privtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cache := kernels.Cache{Dir: kernels.DefaultCacheDir(), Log: t.Logf}
	p, err := Prepare(ctx, cache, "6.1", "", KVMAuto)
	if err != nil {
		t.Fatalf("prepare 6.1: %v", err)
	}
	if !strings.HasPrefix(p.Kernel.Release, "6.1.") {
		t.Fatalf("6.1 resolved to %s", p.Kernel.Release)
	}
	state := t.TempDir()
	var out bytes.Buffer
	res, err := Run(ctx, Options{
		Vmlinuz: p.Kernel.Vmlinuz, Release: p.Kernel.Release,
		Command: "echo uname=$(uname -r); test -d /sys/kernel/tracing/events/sock && echo tracefs-ok; grep -q ' /sys/fs/bpf bpf ' /proc/mounts && echo bpffs-ok; exit 7",
		Timeout: 8 * time.Minute, CPUs: 2, Memory: "1G", KVM: p.KVM.Works,
		Cwd: state, StateDir: filepath.Join(state, "run"), KernelLog: true, Stdout: &out, Stderr: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("boot took %.1fs (%s)", res.Elapsed.Seconds(), p.KVM.Reason)
	if res.ExitCode != 7 {
		t.Fatalf("exit %d, want 7 (%s)\n%s", res.ExitCode, res.Message, out.String())
	}
	// "Linux version" opens every kernel's log; vng keeps it off the console
	// unless asked.
	for _, want := range []string{"uname=" + p.Kernel.Release, "tracefs-ok", "bpffs-ok", "Linux version " + p.Kernel.Release} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("guest output lacks %q:\n%s", want, out.String())
		}
	}

	// A guest that hangs is killed at the timeout.
	res, err = Run(ctx, Options{
		Vmlinuz: p.Kernel.Vmlinuz, Release: p.Kernel.Release, Command: "sleep 1000",
		Timeout: 3 * time.Second, CPUs: 1, Memory: "512M", KVM: p.KVM.Works,
		StateDir: filepath.Join(state, "hang"), Stdout: &out, Stderr: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || res.ExitCode != ExitTimeout || !strings.Contains(res.Message, "did not finish within 3s") {
		t.Errorf("hang: %+v", res)
	}
	if _, err := os.Stat(filepath.Join("/lib/modules", p.Kernel.Release, "modules.dep")); err != nil {
		t.Errorf("modules not installed for virtme-ng: %v", err)
	}
}
