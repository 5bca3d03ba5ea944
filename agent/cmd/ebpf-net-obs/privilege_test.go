package main

// Least privilege, proven: the observer runs as nobody (65534) with no
// capability but those it is given as ambient capabilities, and the kernel
// is asked directly what each capability is needed for.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ebpf-net-obs/ebpf-net-obs/internal/mounts"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
)

const nobody = 65534

var capNames = map[uintptr]string{
	unix.CAP_BPF: "CAP_BPF", unix.CAP_PERFMON: "CAP_PERFMON", unix.CAP_NET_ADMIN: "CAP_NET_ADMIN",
	unix.CAP_SYS_PTRACE: "CAP_SYS_PTRACE", unix.CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH",
}

var threeCaps = []uintptr{unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_NET_ADMIN}

// asNobody runs a child as uid/gid 65534 without supplementary groups,
// with caps as its ambient (so permitted and effective) capabilities and no
// others: a non-root exec keeps nothing else.
func asNobody(caps ...uintptr) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}},
		AmbientCaps: caps,
	}
}

func capMask(caps ...uintptr) uint64 {
	var m uint64
	for _, c := range caps {
		m |= 1 << c
	}
	return m
}

func without(caps []uintptr, drop uintptr) []uintptr {
	var out []uintptr
	for _, c := range caps {
		if c != drop {
			out = append(out, c)
		}
	}
	return out
}

// procStatus reads the Uid, CapPrm and CapEff lines of /proc/PID/status.
func procStatus(t *testing.T, pid int) (uid string, prm, eff uint64) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		v = strings.TrimSpace(v)
		switch k {
		case "Uid":
			uid = strings.Join(strings.Fields(v), " ")
		case "CapPrm":
			prm, _ = strconv.ParseUint(v, 16, 64)
		case "CapEff":
			eff, _ = strconv.ParseUint(v, 16, 64)
		}
	}
	return uid, prm, eff
}

// TestLeastPrivilege: as nobody with exactly CAP_BPF, CAP_PERFMON and
// CAP_NET_ADMIN the observer is healthy and reports a new connection's
// bytes exactly and its owner (this process's pid and name) on both ends.
// Without any one of the three it exits non-zero with one line that names
// the missing capability and the fix.
func TestLeastPrivilege(t *testing.T) {
	privtest.Require(t)
	t.Run("CAP_BPF+CAP_PERFMON+CAP_NET_ADMIN", func(t *testing.T) {
		p := startObserver(t, freeAddr(t), asNobody(threeCaps...))
		p.waitHealthy(t, 60*time.Second)
		uid, prm, eff := procStatus(t, p.cmd.Process.Pid)
		if want := capMask(threeCaps...); uid != "65534 65534 65534 65534" || prm != want || eff != want {
			t.Fatalf("observer runs as uid %q with CapPrm %#x CapEff %#x, want 65534 and %#x", uid, prm, eff, want)
		}
		x := exchange(t, loopbackListener(t), 4321, 98765)
		r := p.waitExact(t, x, ownedByTest(t))
		t.Logf("uid %s, CapEff %#x: client %s; server %s", uid, eff, r.client, r.server)
	})
	for _, drop := range threeCaps {
		name := capNames[drop]
		t.Run("without_"+name, func(t *testing.T) {
			p := startObserver(t, freeAddr(t), asNobody(without(threeCaps, drop)...))
			select {
			case <-p.exited:
			case <-time.After(60 * time.Second):
				t.Fatalf("observer without %s still running after 60s:\n%s", name, p.out)
			}
			var ee *exec.ExitError
			if !errors.As(p.waitErr, &ee) || ee.ExitCode() <= 0 {
				t.Fatalf("observer without %s ended with %v, want a non-zero exit", name, p.waitErr)
			}
			out := strings.TrimRight(p.out.String(), "\n")
			if strings.Contains(out, "\n") {
				t.Fatalf("observer without %s wrote %d lines, want one:\n%s", name, strings.Count(out, "\n")+1, out)
			}
			named, fix, _ := strings.Cut(out, ": run as root")
			if !strings.Contains(named, "missing capability "+name+" (") || fix == "" || !strings.Contains(fix, "grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN") {
				t.Fatalf("observer without %s: %q does not name it as missing and the fix", name, out)
			}
			for _, other := range without(threeCaps, drop) {
				if strings.Contains(named, capNames[other]) {
					t.Errorf("observer without %s names %s as missing: %q", name, capNames[other], out)
				}
			}
			t.Logf("exit %d: %s", ee.ExitCode(), out)
		})
	}
}

// TestOwnersOfOlderListeners: the owner of a socket that was listening
// before the observer started is found by reading every process's
// /proc/PID/fd. As nobody with the three capabilities that fails for other
// users' processes (the directory is 0500 and its links need a ptrace
// check); this shows which extra capability the observer then needs.
// Connections of listeners opened after the start need neither (the kernel
// learns their owner at listen()).
func TestOwnersOfOlderListeners(t *testing.T) {
	privtest.Require(t)
	older := loopbackListener(t) // this root process's, before any observer
	pid := strconv.Itoa(os.Getpid())
	for _, c := range []struct {
		extra []uintptr
		owned bool // the accepted end carries this process's pid
	}{
		{nil, false},
		{[]uintptr{unix.CAP_DAC_READ_SEARCH}, false},
		{[]uintptr{unix.CAP_SYS_PTRACE}, false},
		{[]uintptr{unix.CAP_DAC_READ_SEARCH, unix.CAP_SYS_PTRACE}, true},
	} {
		var names []string
		for _, e := range c.extra {
			names = append(names, capNames[e])
		}
		label := "none"
		if len(names) > 0 {
			label = strings.Join(names, "+")
		}
		t.Run("extra="+label, func(t *testing.T) {
			p := startObserver(t, freeAddr(t), asNobody(append(append([]uintptr{}, threeCaps...), c.extra...)...))
			p.waitHealthy(t, 60*time.Second)
			x := exchange(t, older, 1000, 2000)
			r := p.waitExact(t, x, nil)
			if r.client.pid != pid {
				t.Errorf("client end (connected after the start) has pid %q, want %s", r.client.pid, pid)
			}
			if got := r.server.pid == pid; got != c.owned {
				t.Errorf("extra %v: the older listener's accepted end has pid %q (this process: %s); owned=%v, want %v", names, r.server.pid, pid, got, c.owned)
			}
			t.Logf("extra %v: accepted end of the older listener: %s", names, r.server)
		})
	}
}

// The capability probe: the test binary, run again as nobody with some
// capabilities, tries each kernel operation the observer needs and prints
// "step: ok" or "step: error".
const (
	capProbeEnv       = "EBPF_NET_OBS_CAPPROBE"
	capProbeCgroupEnv = "EBPF_NET_OBS_CAPPROBE_CGROUP"
)

func capProbe() int {
	// Capabilities are per thread: everything below runs on this one.
	runtime.LockOSThread()
	report := func(step string, err error) {
		if err == nil {
			fmt.Printf("%s: ok\n", step)
		} else {
			fmt.Printf("%s: %s\n", step, strings.ReplaceAll(err.Error(), "\n", " "))
		}
	}
	ret := func(v int32) asm.Instructions { return asm.Instructions{asm.Mov.Imm(asm.R0, v), asm.Return()} }

	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	report("map", err)
	if m != nil {
		m.Close()
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.RawTracepoint, License: "GPL", Instructions: ret(0)})
	report("raw_tracepoint", err)
	if p != nil {
		p.Close()
	}
	// sock_ops reading kernel memory, as the observer's CO-RE reads do.
	// Loaded by hand: cilium/ebpf would turn bpf_probe_read_kernel into
	// bpf_probe_read when its own probe for the helper fails.
	report("sock_ops_probe_read_kernel", rawLoad(unix.BPF_PROG_TYPE_SOCK_OPS, asm.Instructions{
		asm.Mov.Reg(asm.R1, asm.RFP), asm.Add.Imm(asm.R1, -8), asm.Mov.Imm(asm.R2, 8), asm.Mov.Imm(asm.R3, 0),
		asm.FnProbeReadKernel.Call(), asm.Mov.Imm(asm.R0, 1), asm.Return(),
	}))
	sockops, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SockOps, License: "GPL", Instructions: ret(1)})
	report("sock_ops", err)
	if sockops == nil {
		return 0
	}
	defer sockops.Close()
	cg := os.Getenv(capProbeCgroupEnv)
	attach := func(step string) {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: ebpf.AttachCGroupSockOps, Program: sockops})
		report(step, err)
		if l != nil {
			l.Close()
		}
	}
	attach("attach_sock_ops")
	// The same with CAP_NET_ADMIN dropped after loading.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var d [2]unix.CapUserData
	err = unix.Capget(&hdr, &d[0])
	if err == nil {
		d[0].Effective &^= 1 << unix.CAP_NET_ADMIN
		err = unix.Capset(&hdr, &d[0])
	}
	if err != nil {
		report("attach_sock_ops_without_net_admin", fmt.Errorf("drop CAP_NET_ADMIN: %w", err))
		return 0
	}
	attach("attach_sock_ops_without_net_admin")
	return 0
}

// rawLoad loads a GPL program of type typ with BPF_PROG_LOAD, exactly as
// given, closes it and returns the kernel's answer with its verifier log.
func rawLoad(typ uint32, insns asm.Instructions) error {
	var code bytes.Buffer
	if err := insns.Marshal(&code, binary.LittleEndian); err != nil {
		return err
	}
	license := []byte("GPL\x00")
	logBuf := make([]byte, 1<<16)
	attr := struct {
		progType, insnCnt uint32
		insns, license    uint64
		logLevel, logSize uint32
		logBuf            uint64
	}{typ, uint32(code.Len() / asm.InstructionSize), uint64(uintptr(unsafe.Pointer(&code.Bytes()[0]))),
		uint64(uintptr(unsafe.Pointer(&license[0]))), 1, uint32(len(logBuf)), uint64(uintptr(unsafe.Pointer(&logBuf[0])))}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(code.Bytes())
	runtime.KeepAlive(license)
	if errno != 0 {
		// The verifier's verdict is its last line before the statistics.
		var verdict string
		for _, line := range strings.Split(string(bytes.TrimRight(logBuf, "\x00")), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "processed ") {
				verdict = line
			}
		}
		return fmt.Errorf("%w: %s", errno, verdict)
	}
	unix.Close(int(fd))
	return nil
}

// runCapProbe runs the probe as nobody with caps and returns each step's
// outcome ("ok" or the error).
func runCapProbe(t *testing.T, exe, cgroup string, caps []uintptr) map[string]string {
	t.Helper()
	cmd := exec.Command(exe)
	cmd.Dir = filepath.Dir(exe)
	cmd.Env = []string{capProbeEnv + "=1", capProbeCgroupEnv + "=" + cgroup}
	cmd.SysProcAttr = asNobody(caps...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("capability probe: %v\n%s", err, out)
	}
	res := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("capability probe: unexpected line %q", line)
		}
		res[k] = v
	}
	return res
}

// copyExecutable copies this test binary where nobody may run it.
func copyExecutable(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "ebpf-net-obs-capprobe-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	exe := filepath.Join(dir, "capprobe")
	dst, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return exe
}

// TestCapabilityClaims asks the kernel what each capability is for, as
// README.md and docs/metadata.md state it: each step the observer needs is
// tried as nobody with the three capabilities and with each one missing.
func TestCapabilityClaims(t *testing.T) {
	privtest.Require(t)
	root, err := mounts.Cgroup2()
	if err != nil {
		t.Fatal(err)
	}
	cg := filepath.Join(root, fmt.Sprintf("ebpf-net-obs-captest-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cg) })
	exe := copyExecutable(t)
	const ok = "ok"
	for _, c := range []struct {
		drop uintptr // 0: none
		want map[string]bool
	}{
		{0, map[string]bool{"map": true, "raw_tracepoint": true, "sock_ops_probe_read_kernel": true, "sock_ops": true,
			"attach_sock_ops": true, "attach_sock_ops_without_net_admin": true}},
		// Without CAP_BPF not even a map.
		{unix.CAP_BPF, map[string]bool{"map": false, "raw_tracepoint": false, "sock_ops_probe_read_kernel": false, "sock_ops": false}},
		// Without CAP_PERFMON: no tracepoint program, no kernel memory reads.
		{unix.CAP_PERFMON, map[string]bool{"map": true, "raw_tracepoint": false, "sock_ops_probe_read_kernel": false, "sock_ops": true,
			"attach_sock_ops": true, "attach_sock_ops_without_net_admin": true}},
		// Without CAP_NET_ADMIN: no sock_ops program.
		{unix.CAP_NET_ADMIN, map[string]bool{"map": true, "raw_tracepoint": true, "sock_ops_probe_read_kernel": false, "sock_ops": false}},
	} {
		caps, name := threeCaps, "all three"
		if c.drop != 0 {
			caps, name = without(threeCaps, c.drop), "without "+capNames[c.drop]
		}
		got := runCapProbe(t, exe, cg, caps)
		for step, want := range c.want {
			res, ran := got[step]
			if !ran || (res == ok) != want {
				t.Errorf("%s: %s: %q, want ok=%v", name, step, res, want)
			}
		}
		for step := range got {
			if _, expected := c.want[step]; !expected {
				t.Errorf("%s: unexpected step %s: %s", name, step, got[step])
			}
		}
		t.Logf("%s: %v", name, got)
	}
}
