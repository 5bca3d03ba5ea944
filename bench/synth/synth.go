// Package synth holds synthetic BPF programs that bench loads itself, built
// with cilium/ebpf's asm package so the build needs Go only (no clang):
//
//   - Floor puts empty programs on exactly the hooks the observer uses
//     (agent/loader attach()). A bench cell with only these attached measures
//     the kernel's dispatch cost of those hooks end to end: the part of the
//     observer's overhead that no change to its programs can remove.
//   - Inject adds a known cost per connect(): a calibrated spin loop on the
//     SYN_SENT transition. A cell with it measures the gate's power: whether
//     the harness notices an overhead of a known size.
package synth

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/ebpf-net-obs/ebpf-net-obs/internal/mounts"
)

// Hooks of inet_sock_set_state, as Programs.Hook names them.
const (
	HookTPBTF = "tp_btf" // typed BTF tracepoint, as the observer prefers
	HookRawTP = "raw_tp" // raw tracepoint, the observer's fallback
)

// MaxIterations bounds the spin loop: the verifier walks every iteration
// (two instructions each), and must stay well under its 1M-instruction limit.
const MaxIterations = 200000

// Offsets and values from the kernel UAPI (include/uapi/linux/bpf.h); the
// context layout of sock_ops programs is a stable ABI. The tests check the
// offsets against this kernel's BTF.
const (
	sockOpsOpOff      = 0  // struct bpf_sock_ops, op
	sockOpsCbFlagsOff = 84 // struct bpf_sock_ops, bpf_sock_ops_cb_flags
	// inet_sock_set_state(sk, oldstate, newstate): tracepoint arguments are
	// u64 slots in the context, so newstate is the third.
	setStateNewstateOff = 16
	tcpSynSent          = 2 // TCP_SYN_SENT
)

// Programs are synthetic programs loaded and attached; Close takes them out.
type Programs struct {
	// Hook is how inet_sock_set_state is hooked: HookTPBTF, or HookRawTP
	// when this kernel refused tp_btf (HookFallback says why).
	Hook         string
	HookFallback string

	// Inject only: the spin loop's iteration count, the calibrated cost of
	// one iteration, and so the estimated cost added to each connect().
	Iterations     uint32
	NsPerIteration float64
	NsPerConnect   float64

	names []string // observer's program names, in load order
	progs map[string]*ebpf.Program
	ids   []uint32
	links []link.Link
}

// IDs returns the kernel IDs of the programs, so bench can read their
// run-time statistics as it does the observer's.
func (p *Programs) IDs() []uint32 { return slices.Clone(p.ids) }

// Programs returns the loaded programs keyed by the name of the observer
// program on the same hook (set_state, retransmit, recv_reset, send_reset,
// sock_ops), so costs compare program by program.
func (p *Programs) Programs() map[string]*ebpf.Program {
	m := make(map[string]*ebpf.Program, len(p.progs))
	for k, v := range p.progs {
		m[k] = v
	}
	return m
}

// Close detaches every link and unloads every program; afterwards nothing
// of ours stays attached.
func (p *Programs) Close() error {
	var errs []error
	for i := len(p.links) - 1; i >= 0; i-- {
		errs = append(errs, p.links[i].Close())
	}
	p.links = nil
	for _, n := range p.names {
		errs = append(errs, p.progs[n].Close())
	}
	p.names, p.progs = nil, nil
	return errors.Join(errs...)
}

// add records a loaded program under the observer's name for its hook.
func (p *Programs) add(name string, prog *ebpf.Program) error {
	if p.progs == nil {
		p.progs = map[string]*ebpf.Program{}
	}
	p.names = append(p.names, name)
	p.progs[name] = prog
	info, err := prog.Info()
	if err != nil {
		return fmt.Errorf("read program info of %s: %w (needs Linux 4.13+)", name, err)
	}
	id, ok := info.ID()
	if !ok {
		return fmt.Errorf("read program ID of %s: not reported by this kernel (needs Linux 4.13+)", name)
	}
	p.ids = append(p.ids, uint32(id))
	return nil
}

// FloorOf names, for each of the observer's hooked programs, the kernel
// name of the floor's empty program on the same hook (names are at most 15
// characters): bench takes the floor's run time per run, which is mostly
// the statistics' own clock reads, off the observer's.
var FloorOf = map[string]string{
	"set_state":  "floor_set_state",
	"retransmit": "floor_retrans",
	"recv_reset": "floor_recv_rst",
	"send_reset": "floor_send_rst",
	"sock_ops":   "floor_sock_ops",
	// bench's own injected cost sits on the lifecycle hook too
	"inject_spin": "floor_set_state",
}

// Floor loads and attaches empty programs on the observer's hooks: one on
// inet_sock_set_state (tp_btf, else raw tracepoint), raw tracepoints on
// tcp_retransmit_skb, tcp_receive_reset and tcp_send_reset, and a sock_ops
// program on the cgroup v2 at cgroupPath ("" finds the mount) that enables
// the per-ACK RTT callback on established connections as the observer's
// does, and nothing else. On error nothing stays loaded.
func Floor(cgroupPath string) (*Programs, error) {
	_ = rlimit.RemoveMemlock() // kernels with memcg accounting need not
	p := &Programs{}
	if err := p.floor(cgroupPath); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Programs) floor(cgroupPath string) error {
	ret0 := asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	if err := p.setState(FloorOf["set_state"], ret0); err != nil {
		return err
	}
	for _, h := range []struct{ name, kname, tp string }{
		{"retransmit", FloorOf["retransmit"], "tcp_retransmit_skb"},
		{"recv_reset", FloorOf["recv_reset"], "tcp_receive_reset"},
		{"send_reset", FloorOf["send_reset"], "tcp_send_reset"},
	} {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: h.kname, Type: ebpf.RawTracepoint, License: "GPL", Instructions: ret0,
		})
		if err != nil {
			return explain("load raw tracepoint "+h.tp, err)
		}
		if err := p.add(h.name, prog); err != nil {
			return err
		}
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: h.tp, Program: prog})
		if err != nil {
			return explain("attach raw tracepoint "+h.tp, err)
		}
		p.links = append(p.links, l)
	}

	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: FloorOf["sock_ops"], Type: ebpf.SockOps, License: "GPL", Instructions: sockOpsInsns(),
	})
	if err != nil {
		return explain("load sock_ops", err)
	}
	if err := p.add("sock_ops", prog); err != nil {
		return err
	}
	if cgroupPath == "" {
		if cgroupPath, err = mounts.Cgroup2(); err != nil {
			return err
		}
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupPath, Attach: ebpf.AttachCGroupSockOps, Program: prog})
	if err != nil {
		return explain("attach sock_ops to cgroup "+cgroupPath, err)
	}
	p.links = append(p.links, l)
	return nil
}

// sockOpsInsns is the observer's sock_ops minus its work: on
// BPF_SOCK_OPS_{ACTIVE,PASSIVE}_ESTABLISHED_CB it sets
// BPF_SOCK_OPS_RTT_CB_FLAG, so the kernel calls sock_ops on every ACK of the
// connection as it does for the observer; every op returns 1.
func sockOpsInsns() asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R1, sockOpsOpOff, asm.Word),
		asm.JEq.Imm(asm.R2, unix.BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, "set_flags"),
		asm.JNE.Imm(asm.R2, unix.BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, "out"),
		asm.LoadMem(asm.R2, asm.R6, sockOpsCbFlagsOff, asm.Word).WithSymbol("set_flags"),
		asm.Or.Imm(asm.R2, unix.BPF_SOCK_OPS_RTT_CB_FLAG),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnSockOpsCbFlagsSet.Call(),
		asm.Mov.Imm(asm.R0, 1).WithSymbol("out"),
		asm.Return(),
	}
}

// setState loads insns on inet_sock_set_state as tp_btf, or as a raw
// tracepoint when this kernel refuses tp_btf (both see the arguments as u64
// slots), attaches it and records which in p.Hook.
func (p *Programs) setState(kname string, insns asm.Instructions) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: kname, Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp,
		AttachTo: "inet_sock_set_state", License: "GPL", Instructions: insns,
	})
	if err == nil {
		p.Hook = HookTPBTF
		if err := p.add("set_state", prog); err != nil {
			return err
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			return explain("attach tp_btf inet_sock_set_state", err)
		}
		p.links = append(p.links, l)
		return nil
	}
	btfErr := explain("load tp_btf inet_sock_set_state", err)
	prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: kname, Type: ebpf.RawTracepoint, License: "GPL", Instructions: insns,
	})
	if err != nil {
		return fmt.Errorf("%w; fallback: %w", btfErr, explain("load raw tracepoint inet_sock_set_state", err))
	}
	p.Hook, p.HookFallback = HookRawTP, btfErr.Error()
	if err := p.add("set_state", prog); err != nil {
		return err
	}
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "inet_sock_set_state", Program: prog})
	if err != nil {
		return explain("attach raw tracepoint inet_sock_set_state", err)
	}
	p.links = append(p.links, l)
	return nil
}

// spin counts a register down from k to 0 (nothing when k is 0): a loop the
// verifier proves bounded because k is a constant. Clobbers R3.
func spin(k uint32) asm.Instructions {
	if k == 0 {
		return nil
	}
	return asm.Instructions{
		asm.Mov.Imm(asm.R3, int32(k)),
		asm.Sub.Imm(asm.R3, 1).WithSymbol("spin"),
		asm.JNE.Imm(asm.R3, 0, "spin"),
	}
}

// injectInsns spins k iterations when newstate is TCP_SYN_SENT, which
// happens exactly once per connect(), and returns 0.
func injectInsns(k uint32) asm.Instructions {
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, setStateNewstateOff, asm.DWord),
		asm.JNE.Imm32(asm.R2, tcpSynSent, "out"),
	}
	insns = append(insns, spin(k)...)
	return append(insns, asm.Mov.Imm(asm.R0, 0).WithSymbol("out"), asm.Return())
}

// Inject calibrates the spin loop (Calibrate) and attaches a program on
// inet_sock_set_state that adds about nsPerConnect to each connect().
func Inject(nsPerConnect float64) (*Programs, error) {
	if err := checkNs(nsPerConnect); err != nil {
		return nil, err // before spending a calibration on it
	}
	ni, err := Calibrate()
	if err != nil {
		return nil, err
	}
	return InjectCalibrated(nsPerConnect, ni)
}

// InjectCalibrated is Inject with a cost per iteration from an earlier
// Calibrate, so several cells share one calibration.
func InjectCalibrated(nsPerConnect, nsPerIteration float64) (*Programs, error) {
	k, err := IterationsFor(nsPerConnect, nsPerIteration)
	if err != nil {
		return nil, err
	}
	_ = rlimit.RemoveMemlock()
	p := &Programs{Iterations: k, NsPerIteration: nsPerIteration, NsPerConnect: float64(k) * nsPerIteration}
	if err := p.setState("inject_spin", injectInsns(k)); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// IterationsFor is the spin loop's iteration count for nsPerConnect at
// nsPerIteration: round(nsPerConnect / nsPerIteration), at most MaxIterations.
func IterationsFor(nsPerConnect, nsPerIteration float64) (uint32, error) {
	if err := checkNs(nsPerConnect); err != nil {
		return 0, err
	}
	if math.IsNaN(nsPerIteration) || math.IsInf(nsPerIteration, 0) || nsPerIteration <= 0 {
		return 0, fmt.Errorf("inject: %v ns per iteration is not a positive cost (take it from Calibrate)", nsPerIteration)
	}
	k := math.Round(nsPerConnect / nsPerIteration)
	if k > MaxIterations {
		return 0, fmt.Errorf("inject %.0f ns per connect: needs %.0f iterations of %.3g ns, over the verifier-safe %d (ask for at most %.0f ns)",
			nsPerConnect, k, nsPerIteration, MaxIterations, MaxIterations*nsPerIteration)
	}
	return uint32(k), nil
}

func checkNs(nsPerConnect float64) error {
	if math.IsNaN(nsPerConnect) || math.IsInf(nsPerConnect, 0) || nsPerConnect < 0 {
		return fmt.Errorf("inject %v ns per connect: not a finite non-negative duration (pass e.g. 500)", nsPerConnect)
	}
	return nil
}

// Calibration: the same loop body as a socket filter, timed by the kernel
// (BPF_PROG_TEST_RUN) at 0 and calIterations iterations. A VM's vCPU is now
// and then slowed for tens of milliseconds (host contention, SMT sibling),
// which adds noise, not cost: each time is the least of calRuns short runs,
// and the fit is the median of calTrials such pairs (~40 ms in all at a
// JITed loop's ~0.3 ns per iteration).
const (
	calIterations = 20000
	calRepeatZero = 5000
	calRepeatSpin = 500
	calRuns       = 3
	calTrials     = 5
)

// Calibrate measures the cost of one spin-loop iteration in nanoseconds:
// the median over calTrials of (t(K)-t(0))/K, where t is the kernel's mean
// run time of the loop as a socket filter under BPF_PROG_TEST_RUN (the
// least of calRuns runs). The JITed
// loop is the same in any program type, so it holds for Inject's program.
func Calibrate() (float64, error) {
	_ = rlimit.RemoveMemlock()
	load := func(k uint32) (*ebpf.Program, error) {
		insns := append(spin(k), asm.Mov.Imm(asm.R0, 0), asm.Return())
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "synth_calib", Type: ebpf.SocketFilter, License: "GPL", Instructions: insns,
		})
		if err != nil {
			return nil, explain(fmt.Sprintf("calibrate: load socket filter spinning %d iterations", k), err)
		}
		return prog, nil
	}
	zero, err := load(0)
	if err != nil {
		return 0, err
	}
	defer zero.Close()
	spinning, err := load(calIterations)
	if err != nil {
		return 0, err
	}
	defer spinning.Close()

	in := make([]byte, 64) // socket filters need at least an Ethernet header
	run := func(p *ebpf.Program, repeat int) (time.Duration, error) {
		least := time.Duration(math.MaxInt64)
		for range calRuns {
			_, d, err := p.Benchmark(in, repeat, nil)
			if err != nil {
				return 0, explain("calibrate: BPF_PROG_TEST_RUN", err)
			}
			least = min(least, d)
		}
		return least, nil
	}
	fits := make([]float64, 0, calTrials)
	for range calTrials {
		t0, err := run(zero, calRepeatZero)
		if err != nil {
			return 0, err
		}
		tk, err := run(spinning, calRepeatSpin)
		if err != nil {
			return 0, err
		}
		fits = append(fits, float64(tk-t0)/calIterations)
	}
	slices.Sort(fits)
	ni := fits[len(fits)/2]
	if !(ni > 0) || math.IsInf(ni, 0) {
		return 0, fmt.Errorf("calibrate: %d loop iterations measured no slower than none (median %.3g ns each); the kernel's test-run clock is unusable here", calIterations, ni)
	}
	return ni, nil
}

// explain turns a kernel error into its cause and fix, on one line.
func explain(what string, err error) error {
	var ve *ebpf.VerifierError
	denied := errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
	switch {
	case errors.As(err, &ve) && (os.Geteuid() == 0 || !denied):
		return fmt.Errorf("%s: rejected by this kernel's verifier (unsupported kernel?): %w", what, err)
	case denied:
		return fmt.Errorf("%s: permission denied (run as root or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN): %w", what, err)
	case errors.Is(err, ebpf.ErrNotSupported), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%s: not supported by this kernel (needs Linux 5.10+ with BTF at /sys/kernel/btf/vmlinux): %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Calibration on the hook itself: the loop is timed where it runs, inside
// inet_sock_set_state with the kernel's stack around it, not under
// BPF_PROG_TEST_RUN. Under a busy load it still costs more than this
// measures (the reports give the injected cost as measured). These
// constants make ~100 ms of loopback connections.
const (
	hookIterations = 20000
	hookConnects   = 400
	hookWorkers    = 4
	hookTrials     = 3
)

// CalibrateOnHook measures one iteration's cost where Inject's loop runs:
// the inject program attached with K iterations and with none, the kernel's
// BPF statistics on, hookConnects loopback connect()s made here each time;
// ns per iteration = (run time per connect at K − at 0) / K, the median of
// hookTrials such pairs. It needs BPF_ENABLE_STATS (5.8+, CAP_SYS_ADMIN).
func CalibrateOnHook() (float64, error) {
	_ = rlimit.RemoveMemlock()
	hold, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return 0, explain("calibrate on the hook: enable BPF statistics", err)
	}
	defer hold.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("calibrate on the hook: listen on loopback: %w", err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	perConnect := func(k uint32) (float64, error) {
		p := &Programs{}
		defer p.Close()
		if err := p.setState("inject_spin", injectInsns(k)); err != nil {
			return 0, err
		}
		prog := p.Programs()["set_state"]
		before, err := prog.Stats()
		if err != nil {
			return 0, fmt.Errorf("calibrate on the hook: read statistics: %w", err)
		}
		// from hookWorkers goroutines at once: the loop's cost depends on
		// how busy the CPUs are, and bench runs it under a busy load
		errs := make(chan error, hookWorkers)
		for range hookWorkers {
			go func() {
				for range hookConnects / hookWorkers {
					c, err := net.Dial("tcp", ln.Addr().String())
					if err != nil {
						errs <- fmt.Errorf("calibrate on the hook: connect: %w", err)
						return
					}
					c.Close()
				}
				errs <- nil
			}()
		}
		for range hookWorkers {
			if err := <-errs; err != nil {
				return 0, err
			}
		}
		after, err := prog.Stats()
		if err != nil {
			return 0, fmt.Errorf("calibrate on the hook: read statistics: %w", err)
		}
		return float64(after.Runtime-before.Runtime) / hookConnects, nil
	}
	fits := make([]float64, 0, hookTrials)
	for range hookTrials {
		t0, err := perConnect(0)
		if err != nil {
			return 0, err
		}
		tk, err := perConnect(hookIterations)
		if err != nil {
			return 0, err
		}
		fits = append(fits, (tk-t0)/hookIterations)
	}
	slices.Sort(fits)
	ni := fits[len(fits)/2]
	if !(ni > 0) || math.IsInf(ni, 0) {
		return 0, fmt.Errorf("calibrate on the hook: %d iterations per connect measured no slower than none (%.3g ns each)", hookIterations, ni)
	}
	return ni, nil
}
