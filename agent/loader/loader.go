// Package loader puts the observer's programs into the kernel with the
// choices made at start (map type, transport, sampling), attaches them and
// takes them all out again on Close.
package loader

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/mounts"
)

// Options are the load-time choices; no recompiling is needed for any of them.
type Options struct {
	Ringbuf        bool         // transport: BPF ring buffer, else perf event array
	RingbufBytes   uint32       // ring buffer size (power of two, page multiple)
	ConnMapType    ebpf.MapType // Hash, LRUHash, PerCPUHash or LRUCPUHash
	MaxConnections uint32       // capacity of the connection-state map
	SampleRate     uint32       // keep 1 in N per-ACK samples
	CgroupPath     string       // cgroup v2 dir for sock_ops; "" finds the mount
	// RawTracepoint skips the tp_btf lifecycle program and uses its raw
	// tracepoint twin, as kernels without tp_btf do (tests cover both).
	RawTracepoint bool
	// Unbatched sends every close record at once, as kernels that cannot
	// run flush_closes on a chosen CPU do (tests cover both).
	Unbatched bool
	Log       *slog.Logger
}

// Objects are what stays loaded: every map, and one program per hook.
type Objects struct {
	bpf.TcpobsMaps
	SetState   *ebpf.Program `ebpf:"set_state"`
	Retransmit *ebpf.Program `ebpf:"retransmit"`
	RecvReset  *ebpf.Program `ebpf:"recv_reset"`
	SendReset  *ebpf.Program `ebpf:"send_reset"`
	SockOps    *ebpf.Program `ebpf:"sock_ops"`
	// FlushCloses is never attached; see Observer.FlushCloses.
	FlushCloses *ebpf.Program `ebpf:"flush_closes"`
}

// Close releases the maps and programs.
func (o *Objects) Close() error {
	var errs []error
	for _, p := range []*ebpf.Program{o.SetState, o.Retransmit, o.RecvReset, o.SendReset, o.SockOps, o.FlushCloses} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	return errors.Join(append(errs, o.TcpobsMaps.Close())...)
}

// Observer is the loaded and attached kernel side.
type Observer struct {
	Objs     Objects
	Opts     Options
	TPBTF    bool              // set_state runs as tp_btf (typed socket loads)
	Disabled map[string]string // feature -> why it is off
	links    []attached
	// live refreshes open connections' counters from their sockets (nil:
	// the per-ACK callback keeps them, on per-CPU maps or before 5.13).
	live *ebpf.Program
	// waiting holds each CPU's batch of close records as FlushCloses last
	// read them (reused: the read loop calls it twice a second).
	waiting []bpf.TcpobsCloseBatch
}

// ErrPrivileges marks failures that root (or CAP_BPF+CAP_PERFMON+CAP_NET_ADMIN) fixes.
var ErrPrivileges = errors.New("insufficient privileges (run as root, or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)")

// Load loads, configures and attaches every program. On error nothing stays
// loaded or attached.
func Load(o Options) (*Observer, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := CheckCapabilities(); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		o.Log.Debug("memlock rlimit not raised; relying on memory cgroup accounting", "err", err)
	}
	obs := &Observer{Opts: o, Disabled: map[string]string{}}
	if err := obs.start(); err != nil {
		obs.Close()
		return nil, err
	}
	for f, why := range obs.Disabled {
		o.Log.Warn("feature off", "feature", f, "why", why)
	}
	return obs, nil
}

// start does Load's work; on error the caller closes what it left behind.
func (obs *Observer) start() error {
	spec, err := bpf.LoadTcpobs()
	if err != nil {
		return fmt.Errorf("parse embedded BPF object: %w", err)
	}
	if err := obs.configure(spec); err != nil {
		return err
	}
	if err := obs.load(spec); err != nil {
		return err
	}
	if obs.LiveFromSockets() {
		var live struct {
			P *ebpf.Program `ebpf:"conns_live"`
		}
		opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{"conns": obs.Objs.Conns}}
		if err := spec.LoadAndAssign(&live, opts); err != nil {
			return explain("load conns_live", err)
		}
		obs.live = live.P
	}
	return obs.attach()
}

// LiveFromSockets says whether open connections' live counters are read
// from their sockets at flush time (conns_live), which needs a shared map and
// bpf_for_each_map_elem (5.13); else the per-ACK callback carries them, and
// sampling must keep that callback on every connection.
func (obs *Observer) LiveFromSockets() bool {
	if _, off := obs.Disabled["live_from_sockets"]; off {
		return false
	}
	return true
}

func (obs *Observer) probeLive() {
	switch {
	case obs.PercpuConns():
		obs.Disabled["live_from_sockets"] = "per-CPU connection map: live counters ride on every ACK"
	case features.HaveProgramHelper(ebpf.RawTracepoint, asm.FnForEachMapElem) != nil:
		obs.Disabled["live_from_sockets"] = "bpf_for_each_map_elem missing (needs 5.13): live counters ride on every ACK"
	}
}

// Batched says whether close records leave the kernel in per-CPU batches,
// which FlushCloses must then send on when they wait.
func (obs *Observer) Batched() bool {
	_, off := obs.Disabled["close_batches"]
	return !off
}

func (obs *Observer) probeBatches() {
	if obs.Opts.Unbatched {
		obs.Disabled["close_batches"] = "unbatched requested"
		return
	}
	if err := haveRunOnCPU(); err != nil {
		obs.Disabled["close_batches"] = fmt.Sprintf("raw tracepoint programs cannot be run on a chosen CPU (%v; needs 5.10): every close record is sent alone", err)
	}
}

// haveRunOnCPU runs an empty raw tracepoint program on CPU 0, as
// FlushCloses runs flush_closes.
func haveRunOnCPU() error {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.RawTracepoint, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return err
	}
	defer p.Close()
	_, err = p.Run(&ebpf.RunOptions{Flags: unix.BPF_F_TEST_RUN_ON_CPU, CPU: 0})
	return err
}

// FlushCloses sends on the close records that wait in a CPU's partial
// batch: it runs flush_closes on each CPU that has some. The read loop
// calls it before each drain, so a close record waits at most one drain
// interval in all. Not safe for concurrent use.
func (obs *Observer) FlushCloses() error {
	if !obs.Batched() {
		return nil
	}
	if err := obs.Objs.Batches.Lookup(uint32(0), &obs.waiting); err != nil {
		return fmt.Errorf("read close batches: %w", err)
	}
	var errs []error
	for cpu := range obs.waiting {
		if obs.waiting[cpu].N == 0 {
			continue
		}
		if _, err := obs.Objs.FlushCloses.Run(&ebpf.RunOptions{Flags: unix.BPF_F_TEST_RUN_ON_CPU, CPU: uint32(cpu)}); err != nil {
			errs = append(errs, fmt.Errorf("flush close records on CPU %d: %w", cpu, err))
		}
	}
	return errors.Join(errs...)
}

// RefreshLive updates every open connection's live counters in the map
// from its socket (a no-op where the per-ACK callback keeps them).
func (obs *Observer) RefreshLive() error {
	if obs.live == nil {
		return nil
	}
	if _, err := obs.live.Run(&ebpf.RunOptions{}); err != nil {
		return fmt.Errorf("run conns_live: %w", err)
	}
	return nil
}

// load prefers set_state's tp_btf twin and falls back to the raw
// tracepoint where the kernel refuses it (no BTF-typed tracing programs).
// Either way the kernel knows the program as set_state.
func (obs *Observer) load(spec *ebpf.CollectionSpec) error {
	pick := func(name string) *ebpf.CollectionSpec {
		cs := spec.Copy()
		ps := cs.Programs[name].Copy()
		ps.Name = bpf.TcpobsProgSetState
		cs.Programs[bpf.TcpobsProgSetState] = ps
		delete(cs.Programs, bpf.TcpobsProgSetStateBtf)
		return cs
	}
	if !obs.Opts.RawTracepoint {
		err := pick(bpf.TcpobsProgSetStateBtf).LoadAndAssign(&obs.Objs, nil)
		if err == nil {
			obs.TPBTF = true
			return nil
		}
		obs.Disabled["tp_btf"] = fmt.Sprintf("tp_btf program refused (%.200v); using the raw tracepoint, one helper call per socket field", err)
	} else {
		obs.Disabled["tp_btf"] = "raw tracepoint requested"
	}
	if err := pick(bpf.TcpobsProgSetState).LoadAndAssign(&obs.Objs, nil); err != nil {
		return explain("load BPF programs", err)
	}
	return nil
}

func (obs *Observer) configure(spec *ebpf.CollectionSpec) error {
	o := obs.Opts
	obs.probeLive()
	obs.probeBatches()
	conns := spec.Maps["conns"]
	conns.Type = o.ConnMapType
	conns.MaxEntries = o.MaxConnections
	percpu := obs.PercpuConns()
	if err := features.HaveMapType(o.ConnMapType); err != nil {
		return fmt.Errorf("map type %s is not supported by this kernel: %w (choose --map-type hash)", o.ConnMapType, err)
	}
	if o.Ringbuf {
		if err := features.HaveMapType(ebpf.RingBuf); err != nil {
			return fmt.Errorf("ring buffer is not supported by this kernel (needs 5.8): %w (use --transport perf)", err)
		}
		spec.Maps["events_rb"].MaxEntries = o.RingbufBytes
	} else {
		// Keep the unused ring small; the program never writes it.
		spec.Maps["events_rb"].MaxEntries = uint32(os.Getpagesize())
	}
	havePercpuLookup := features.HaveProgramHelper(ebpf.RawTracepoint, asm.FnMapLookupPercpuElem) == nil
	if percpu && !havePercpuLookup {
		obs.Disabled["percpu_merge"] = "bpf_map_lookup_percpu_elem missing (needs 5.19): per-CPU close records carry only the closing CPU's share; user space completes what it saw at flushes"
	}
	// The ring buffer wakes the reader only when a quarter of it has piled
	// up: a burst still finds three quarters free, and at steady rates the
	// reader's own timer drains it first (each wake-up is a context switch).
	wake := o.RingbufBytes / 4
	set := map[string]any{
		"sample_rate":        o.SampleRate,
		"use_ringbuf":        boolByte(o.Ringbuf),
		"percpu_conns":       boolByte(percpu),
		"have_percpu_lookup": boolByte(havePercpuLookup),
		"nr_cpus":            uint32(runtime.NumCPU()),
		"wakeup_bytes":       wake,
		"live_from_acks":     boolByte(!obs.LiveFromSockets()),
		"sample_seed":        rand.Uint64(),
		"batch_len":          uint32(1),
	}
	if obs.Batched() {
		set["batch_len"] = uint32(len(bpf.TcpobsCloseBatch{}.Ev))
	}
	if n, err := ebpf.PossibleCPU(); err == nil {
		set["nr_cpus"] = uint32(n)
	}
	for name, v := range set {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("BPF object has no variable %q (regenerate with 'make generate')", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func (obs *Observer) attach() error {
	if obs.TPBTF {
		l, err := link.AttachTracing(link.TracingOptions{Program: obs.Objs.SetState})
		if err != nil {
			return explain("attach tp_btf inet_sock_set_state", err)
		}
		obs.track("set_state", obs.Objs.SetState, l)
	} else if err := obs.attachRaw("inet_sock_set_state", obs.Objs.SetState); err != nil {
		return err
	}
	for tp, prog := range map[string]*ebpf.Program{
		"tcp_retransmit_skb": obs.Objs.Retransmit,
		"tcp_receive_reset":  obs.Objs.RecvReset,
		"tcp_send_reset":     obs.Objs.SendReset,
	} {
		if err := obs.attachRaw(tp, prog); err != nil {
			return err
		}
	}
	cg := obs.Opts.CgroupPath
	if cg == "" {
		var err error
		if cg, err = mounts.Cgroup2(); err != nil {
			return err
		}
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: ebpf.AttachCGroupSockOps, Program: obs.Objs.SockOps})
	if err != nil {
		return explain("attach sock_ops to cgroup "+cg, err)
	}
	obs.track("sock_ops", obs.Objs.SockOps, l)
	return nil
}

func (obs *Observer) attachRaw(tp string, prog *ebpf.Program) error {
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: prog})
	if err != nil {
		return explain("attach raw tracepoint "+tp, err)
	}
	obs.track(obs.programName(prog), prog, l)
	return nil
}

// attached is one program's link, named as Programs names the program;
// prog is the program's kernel ID (0: unknown, not checked).
type attached struct {
	name string
	prog ebpf.ProgramID
	link link.Link
}

func (obs *Observer) track(name string, p *ebpf.Program, l link.Link) {
	var id ebpf.ProgramID
	if info, err := p.Info(); err == nil {
		id, _ = info.ID()
	}
	obs.links = append(obs.links, attached{name, id, l})
}

func (obs *Observer) programName(p *ebpf.Program) string {
	for name, q := range obs.Programs() {
		if q == p {
			return name
		}
	}
	return p.String()
}

// Attached checks in the kernel that every program is still attached: its
// link still runs it, and a cgroup link still has its cgroup (BPF_LINK_DETACH
// from another process, e.g. bpftool link detach, or the removal of the
// --cgroup-path cgroup, leave the link open but detached). One or two
// BPF_OBJ_GET_INFO_BY_FD per link, no map or program walk. An attachment
// without a BPF link (the fallbacks before 5.7) cannot be described and is
// trusted. The error names the program.
func (obs *Observer) Attached() error {
	if len(obs.links) == 0 {
		return errors.New("no program attached")
	}
	for _, a := range obs.links {
		info, err := a.link.Info()
		if errors.Is(err, link.ErrNotSupported) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: its link is gone: %w", a.name, err)
		}
		if a.prog != 0 && info.Program != a.prog {
			return fmt.Errorf("%s detached: its link %d runs program %d, not %d", a.name, info.ID, info.Program, a.prog)
		}
		if cg := info.Cgroup(); cg != nil && cg.CgroupId == 0 {
			return fmt.Errorf("%s detached: its link %d has no cgroup any more (detached, or the cgroup was removed)", a.name, info.ID)
		}
	}
	return nil
}

// Programs returns the loaded programs by kernel name (as metrics label them).
func (obs *Observer) Programs() map[string]*ebpf.Program {
	return map[string]*ebpf.Program{
		"set_state":  obs.Objs.SetState,
		"retransmit": obs.Objs.Retransmit,
		"recv_reset": obs.Objs.RecvReset,
		"send_reset": obs.Objs.SendReset,
		"sock_ops":   obs.Objs.SockOps,
	}
}

// PercpuConns reports whether the connection map keeps one value per CPU.
func (obs *Observer) PercpuConns() bool {
	t := obs.Opts.ConnMapType
	return t == ebpf.PerCPUHash || t == ebpf.LRUCPUHash
}

// Close detaches and unloads everything, in reverse order.
func (obs *Observer) Close() error {
	var errs []error
	for i := len(obs.links) - 1; i >= 0; i-- {
		errs = append(errs, obs.links[i].link.Close())
	}
	obs.links = nil
	if obs.live != nil {
		errs = append(errs, obs.live.Close())
		obs.live = nil
	}
	errs = append(errs, obs.Objs.Close())
	return errors.Join(errs...)
}

// explain turns kernel errors into a cause and a fix.
func explain(what string, err error) error { return explainFor(what, err, os.Geteuid() == 0) }

// explainFor is explain for a process that is root or not. The verifier
// rejects a program with EACCES too: for root its log is the cause, not
// privileges.
func explainFor(what string, err error, root bool) error {
	var ve *ebpf.VerifierError
	denied := errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
	switch {
	case errors.As(err, &ve) && (root || !denied):
		return fmt.Errorf("%s: rejected by this kernel's verifier (unsupported kernel?): %w", what, ve)
	case denied:
		return fmt.Errorf("%s: %w: %w", what, ErrPrivileges, err)
	case errors.Is(err, ebpf.ErrNotSupported), errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%s: not supported by this kernel (needs Linux 5.10+ with BTF): %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
