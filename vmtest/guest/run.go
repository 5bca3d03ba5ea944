package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ExitTimeout is the exit status of a guest killed at its timeout (like timeout(1)).
const ExitTimeout = 124

// ExitNoStatus is returned when the guest ended without reporting the
// command's exit status (kernel panic, failed boot, killed QEMU).
const ExitNoStatus = 125

// Options describe one boot.
type Options struct {
	Vmlinuz string // kernel image
	Release string // its uname -r (for messages)
	// Command is a bash command line run as root inside the guest, after Prelude.
	Command string
	Timeout time.Duration // whole boot, 0 = none
	CPUs    int
	Memory  string // qemu -m syntax: 2G, 1536M
	KVM     bool
	// Cwd is the guest's working directory (the project folder); it is
	// shared writable, like every RWDirs entry.
	Cwd    string
	RWDirs []string
	// StateDir is a host directory for the run's script and exit status; it
	// is shared writable with the guest. Required.
	StateDir string
	// Env is exported inside the guest.
	Env []string
	// KernelLog puts the guest kernel's own messages (boot, oops, panic,
	// OOM kills) on Stderr next to the command's output, so a guest that dies
	// leaves its last words behind. vng keeps the console quiet otherwise.
	KernelLog      bool
	Stdout, Stderr io.Writer
}

// Result is how a boot ended.
type Result struct {
	ExitCode int           `json:"exit_code"`
	TimedOut bool          `json:"timed_out"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	// Message explains a timeout or a missing exit status.
	Message string `json:"message,omitempty"`
}

// MountPrelude mounts what the BPF tooling needs when it is missing: tracefs
// (cilium/ebpf attaches tracepoints through it), debugfs and bpffs. It is
// safe on the host too.
const MountPrelude = `mountpoint -q /sys/kernel/tracing 2>/dev/null || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mountpoint -q /sys/kernel/debug 2>/dev/null || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mountpoint -q /sys/fs/bpf 2>/dev/null || mount -t bpf bpf /sys/fs/bpf 2>/dev/null
`

// Prelude runs first in every guest: MountPrelude, cgroup v2 at
// /sys/fs/cgroup (virtme-ng normally mounts it; older kernels may not get
// it), loopback up, and a Go environment that works on the read-only host
// filesystem without network. Never run it on the host: there
// /sys/fs/cgroup may be a cgroup v1 hierarchy.
const Prelude = MountPrelude + `grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts || mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
ip link set lo up 2>/dev/null
export HOME=/root PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOPROXY=off VMTEST_GUEST=1
`

// TCGStatsHold keeps the kernel's BPF statistics on for a whole TCG guest.
// Guests under TCG have locked up with both vCPUs at the statistics' jump
// label in bpf_trace_run3 (docs/vmtest.md, Troubleshooting): switching them
// patches kernel text every CPU runs. Held on by the sysctl, the observer's
// sampled windows only move the key's reference count and nothing is
// patched; timings under TCG compare nothing anyway. Kernels before 5.8
// have no such sysctl.
const TCGStatsHold = `[ -w /proc/sys/kernel/bpf_stats_enabled ] && echo 1 > /proc/sys/kernel/bpf_stats_enabled
`

// Script is the complete guest script: prelude, environment, the command in
// a subshell, and the exit status written where the host reads it.
func Script(opts Options, statusFile string) string {
	var b strings.Builder
	b.WriteString("#!/bin/bash\n# written by vmtest; runs inside the guest\n")
	b.WriteString(Prelude)
	if !opts.KVM {
		b.WriteString(TCGStatsHold)
	}
	for _, e := range opts.Env {
		fmt.Fprintf(&b, "export %s\n", ShellQuote(e))
	}
	if opts.Cwd != "" {
		fmt.Fprintf(&b, "cd %s || exit 1\n", ShellQuote(opts.Cwd))
	}
	fmt.Fprintf(&b, "(\n%s\n)\nrc=$?\n", opts.Command)
	fmt.Fprintf(&b, "echo $rc > %s\nsync\nexit $rc\n", ShellQuote(statusFile))
	return b.String()
}

// ShellQuote quotes s for bash.
func ShellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// JoinCommand makes one shell command line from argv: a single argument is
// taken as a shell command line as is, several are quoted word by word.
func JoinCommand(argv []string) string {
	if len(argv) == 1 {
		return argv[0]
	}
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = ShellQuote(a)
	}
	return strings.Join(q, " ")
}

// VngArgs is the virtme-ng command line for opts.
func VngArgs(opts Options, scriptPath string) []string {
	args := []string{"--run", opts.Vmlinuz, "--force-9p", "--disable-monitor"}
	if !opts.KVM {
		args = append(args, "--disable-kvm")
	}
	if opts.CPUs > 0 {
		args = append(args, "--cpus", strconv.Itoa(opts.CPUs))
	}
	if opts.Memory != "" {
		args = append(args, "--memory", opts.Memory)
	}
	seen := map[string]bool{}
	for _, d := range append([]string{opts.StateDir, opts.Cwd}, opts.RWDirs...) {
		if d == "" || seen[d] {
			continue
		}
		seen[d] = true
		args = append(args, "--rwdir", d)
	}
	if opts.Cwd != "" {
		args = append(args, "--cwd", opts.Cwd)
	}
	if opts.KernelLog {
		// --verbose shows the console at vng's "debug" level; loglevel=6
		// (read after it) keeps notices and worse: the banner, warnings,
		// oopses, OOM kills, hung tasks, not the chatter printing on a
		// slow emulated console would cost.
		args = append(args, "--verbose", "--append", "loglevel=6")
	}
	return append(args, "--exec", "bash "+scriptPath)
}

// Run boots the kernel and runs opts.Command. The error is for failures to
// start; a command that fails, a guest that dies and a timeout are all
// reported in Result.
func Run(ctx context.Context, opts Options) (Result, error) {
	if opts.StateDir == "" {
		return Result{}, errors.New("guest.Run: no StateDir")
	}
	if _, err := os.Stat(opts.Vmlinuz); err != nil {
		return Result{}, fmt.Errorf("kernel image: %w", err)
	}
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return Result{}, err
	}
	statusFile := filepath.Join(opts.StateDir, "exit-status")
	_ = os.Remove(statusFile)
	script := filepath.Join(opts.StateDir, "guest.sh")
	if err := os.WriteFile(script, []byte(Script(opts, statusFile)), 0o755); err != nil {
		return Result{}, err
	}
	stdout, stderr := opts.Stdout, opts.Stderr
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	cmd := exec.Command("vng", VngArgs(opts, script)...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Stdin = nil // /dev/null: vng must not wait for a terminal
	// vng (python) starts qemu; a process group lets a timeout kill both.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// virtme-ng 1.35 checks each --rwdir's guest path relative to its own
	// working directory: from anywhere but / it rejects valid directories
	// ("path must be defined inside a valid overlay"). The guest's working
	// directory is set with --cwd instead.
	cmd.Dir = "/"
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("start vng: %w (run `vmtest setup`)", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var timeout <-chan time.Time
	if opts.Timeout > 0 {
		t := time.NewTimer(opts.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	res := Result{}
	var werr error
	select {
	case werr = <-done:
	case <-timeout:
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		res.TimedOut = true
		res.ExitCode = ExitTimeout
		res.Elapsed = time.Since(begin)
		res.Message = fmt.Sprintf("guest %s did not finish within %s: killed QEMU (exit %d); raise --timeout if it was only slow", opts.Release, opts.Timeout, ExitTimeout)
		return res, nil
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		res.ExitCode = 130
		res.Elapsed = time.Since(begin)
		res.Message = fmt.Sprintf("interrupted: killed the guest %s", opts.Release)
		return res, nil
	}
	res.Elapsed = time.Since(begin)
	b, err := os.ReadFile(statusFile)
	if err == nil {
		if code, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
			res.ExitCode = code
			return res, nil
		}
	}
	res.ExitCode = ExitNoStatus
	res.Message = fmt.Sprintf("guest %s ended without reporting the command's exit status (vng: %v): the kernel did not boot, panicked, or could not mount the host filesystem; %s", opts.Release, werr, lastWordsHint(opts))
	return res, nil
}

func lastWordsHint(opts Options) string {
	if opts.KernelLog {
		return "its kernel's messages are in the console output"
	}
	return "rerun with `vmtest run --kernel-log` to see the kernel's messages"
}
