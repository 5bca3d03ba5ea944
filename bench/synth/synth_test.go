package synth

import (
	"errors"
	"io"
	"math"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/ebpf-net-obs/ebpf-net-obs/internal/bpfstats"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
)

// The sock_ops context offsets and callback values the programs use are the
// ones of this kernel (BTF) and its UAPI.
func TestSockOpsLayout(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skipf("no kernel BTF: %v", err)
	}
	var s *btf.Struct
	if err := spec.TypeByName("bpf_sock_ops", &s); err != nil {
		t.Fatalf("struct bpf_sock_ops in kernel BTF: %v", err)
	}
	want := map[string]uint32{"op": sockOpsOpOff, "bpf_sock_ops_cb_flags": sockOpsCbFlagsOff}
	for _, m := range s.Members {
		if off, ok := want[m.Name]; ok {
			if got := m.Offset.Bytes(); got != off {
				t.Errorf("bpf_sock_ops.%s at offset %d, programs use %d", m.Name, got, off)
			}
			delete(want, m.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("bpf_sock_ops lacks %v", want)
	}
	enums := map[string]uint64{
		"BPF_SOCK_OPS_RTT_CB_FLAG":            unix.BPF_SOCK_OPS_RTT_CB_FLAG,
		"BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB":  unix.BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB,
		"BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB": unix.BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB,
		"TCP_SYN_SENT":                        tcpSynSent,
	}
	for typ, err := range spec.All() {
		if err != nil {
			t.Fatal(err)
		}
		e, ok := typ.(*btf.Enum)
		if !ok {
			continue
		}
		for _, v := range e.Values {
			if want, ok := enums[v.Name]; ok {
				if v.Value != want {
					t.Errorf("%s = %d in kernel BTF, programs use %d", v.Name, v.Value, want)
				}
				delete(enums, v.Name)
			}
		}
		if len(enums) == 0 {
			break
		}
	}
	if len(enums) > 0 {
		t.Errorf("kernel BTF lacks %v", enums)
	}
}

func TestIterationsFor(t *testing.T) {
	for _, c := range []struct {
		ns, ni float64
		want   uint32
	}{{500, 0.25, 2000}, {0, 0.3, 0}, {1, 0.3, 3}, {MaxIterations, 1, MaxIterations}} {
		got, err := IterationsFor(c.ns, c.ni)
		if err != nil || got != c.want {
			t.Errorf("IterationsFor(%v, %v) = %d, %v; want %d", c.ns, c.ni, got, err, c.want)
		}
	}
	for _, c := range [][2]float64{{-1, 1}, {math.NaN(), 1}, {math.Inf(1), 1}, {500, 0}, {500, math.NaN()}, {MaxIterations + 1, 1}} {
		if k, err := IterationsFor(c[0], c[1]); err == nil {
			t.Errorf("IterationsFor(%v, %v) = %d, want an error", c[0], c[1], k)
		}
	}
	if _, err := Inject(-5); err == nil {
		t.Error("Inject(-5) succeeded")
	}
}

func TestCalibrate(t *testing.T) {
	privtest.Require(t)
	ni, err := Calibrate()
	if err != nil {
		t.Fatal(err)
	}
	if !(ni > 0) || math.IsInf(ni, 0) {
		t.Fatalf("Calibrate() = %v, want a positive finite cost", ni)
	}
	t.Logf("spin loop: %.4f ns per iteration", ni)
	// Both counts come from one calibration: the cost is linear in K.
	k500, err := IterationsFor(500, ni)
	if err != nil {
		t.Fatal(err)
	}
	k1000, err := IterationsFor(1000, ni)
	if err != nil {
		t.Fatal(err)
	}
	if k500 == 0 || math.Abs(float64(k1000)-2*float64(k500)) > 0.1*2*float64(k500) {
		t.Errorf("K(1000 ns) = %d, K(500 ns) = %d: want about twice", k1000, k500)
	}
}

func TestFloor(t *testing.T) {
	privtest.Require(t)
	enableStats(t)
	p, err := Floor("")
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			p.Close()
		}
	})
	if p.Hook != HookTPBTF {
		t.Logf("inet_sock_set_state hooked as %s: %s", p.Hook, p.HookFallback)
	}
	progs := p.Programs()
	for _, n := range []string{"set_state", "retransmit", "recv_reset", "send_reset", "sock_ops"} {
		if progs[n] == nil {
			t.Fatalf("no %s program", n)
		}
	}
	ids := p.IDs()
	if len(ids) != 5 {
		t.Fatalf("IDs() = %v, want 5", ids)
	}

	const n = 20
	ss0, so0 := runCount(t, progs["set_state"]), runCount(t, progs["sock_ops"])
	cycles(t, n)
	ss, so := runCount(t, progs["set_state"])-ss0, runCount(t, progs["sock_ops"])-so0
	t.Logf("%d connections: set_state ran %d times, sock_ops %d", n, ss, so)
	if ss < 4*n {
		t.Errorf("set_state ran %d times over %d connections, want >= %d", ss, n, 4*n)
	}
	if so < n {
		t.Errorf("sock_ops ran %d times over %d connections, want >= %d", so, n, n)
	}

	// The RTT callback the program enables on established connections
	// calls it on the ACKs of a request/response exchange.
	const rounds = 20
	before, after := pingPong(t, rounds, func() uint64 { return runCount(t, progs["sock_ops"]) })
	if after-before < rounds {
		t.Errorf("sock_ops ran %d times over %d request/response rounds, want >= %d (RTT callback not enabled?)", after-before, rounds, rounds)
	}

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	assertGone(t, ids)
}

func TestInject(t *testing.T) {
	privtest.Require(t)
	enableStats(t)
	p, err := Inject(500)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	t.Logf("Inject(500): hook %s, K = %d at %.4f ns per iteration = %.1f ns per connect", p.Hook, p.Iterations, p.NsPerIteration, p.NsPerConnect)
	if p.Iterations == 0 {
		t.Fatal("Inject(500) spins 0 iterations")
	}
	if math.Abs(p.NsPerConnect-500) > p.NsPerIteration/2+1e-9 {
		t.Errorf("NsPerConnect = %v, want 500 within half an iteration (%v ns)", p.NsPerConnect, p.NsPerIteration)
	}
	if ids := p.IDs(); len(ids) != 1 {
		t.Fatalf("IDs() = %v, want one program", ids)
	}

	// The spinning program runs on every state change, as the floor's
	// does: both see the same events over the same connections.
	floor, err := Floor("")
	if err != nil {
		t.Fatal(err)
	}
	defer floor.Close()
	spin, empty := p.Programs()["set_state"], floor.Programs()["set_state"]
	const n = 20
	var ds, de uint64
	for try := 0; try < 3; try++ {
		s0, e0 := runs(t, spin), runs(t, empty)
		cycles(t, n)
		s1, e1 := runs(t, spin), runs(t, empty)
		ds, de = s1-s0, e1-e0
		if ds == de {
			break
		}
		// A state change elsewhere landed between two reads; measure again.
		t.Logf("try %d: spinning program ran %d times, floor %d", try, ds, de)
	}
	if ds < n {
		t.Errorf("spinning program ran %d times over %d connections, want >= %d", ds, n, n)
	}
	if ds != de {
		t.Errorf("spinning program ran %d times, the floor's set_state %d, over the same %d connections", ds, de, n)
	}

	// Zero cost loads without a loop (a zero countdown would wrap).
	ni := p.NsPerIteration
	z, err := InjectCalibrated(0, ni)
	if err != nil {
		t.Fatal(err)
	}
	if z.Iterations != 0 || z.NsPerConnect != 0 {
		t.Errorf("InjectCalibrated(0) = %d iterations, %v ns", z.Iterations, z.NsPerConnect)
	}
	ids := z.IDs()
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, ids)

	// The largest loop passes the verifier.
	big, err := InjectCalibrated(MaxIterations*ni, ni)
	if err != nil {
		t.Fatal(err)
	}
	if big.Iterations != MaxIterations {
		t.Errorf("K = %d, want %d", big.Iterations, MaxIterations)
	}
	big.Close()
}

// The raw tracepoint fallback loads the same instructions: they pass this
// kernel's verifier as raw tracepoint programs and run on a context of u64
// argument slots, for any newstate.
func TestRawTracepointTwin(t *testing.T) {
	privtest.Require(t)
	for _, k := range []uint32{0, 100} {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type: ebpf.RawTracepoint, License: "GPL", Instructions: injectInsns(k),
		})
		if err != nil {
			t.Fatalf("raw tracepoint spinning %d: %v", k, err)
		}
		for _, newstate := range []uint64{1, tcpSynSent} {
			ctx := []uint64{0, 7, newstate}
			ret, err := prog.Run(&ebpf.RunOptions{Context: ctx})
			if err != nil || ret != 0 {
				t.Errorf("K=%d newstate=%d: returned %d, %v", k, newstate, ret, err)
			}
		}
		prog.Close()
	}
}

func enableStats(t *testing.T) {
	t.Helper()
	c, err := bpfstats.Enable()
	if err != nil {
		t.Fatalf("enable BPF statistics: %v", err)
	}
	t.Cleanup(func() { c.Close() })
}

func runCount(t *testing.T, p *ebpf.Program) uint64 {
	t.Helper()
	s, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s.RunCount
}

// runs counts runs and runs skipped for recursion: a state change in a
// softirq that interrupts the spinning program on its CPU skips it only.
func runs(t *testing.T, p *ebpf.Program) uint64 {
	t.Helper()
	s, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s.RunCount + s.RecursionMisses
}

// cycles opens and closes n loopback TCP connections and returns once both
// ends of each are closed.
func cycles(t *testing.T, n int) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range n {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	for range n {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	wg.Wait()
}

// pingPong exchanges rounds one-byte requests and responses on one
// established loopback connection, reading count before and after.
func pingPong(t *testing.T, rounds int, count func() uint64) (before, after uint64) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 1)
		for {
			if _, err := io.ReadFull(c, b); err != nil {
				return
			}
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	// One round first, so both ends are established before counting.
	exchange := func() {
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
	}
	exchange()
	before = count()
	for range rounds {
		exchange()
	}
	after = count()
	c.Close()
	<-done
	return before, after
}

// assertGone waits briefly for the kernel to free the programs (links may
// release them after an RCU grace period) and fails if any ID still resolves.
func assertGone(t *testing.T, ids []uint32) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for _, id := range ids {
		for {
			p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
			if err != nil {
				if !errors.Is(err, unix.ENOENT) {
					t.Errorf("program %d: %v, want ENOENT", id, err)
				}
				break
			}
			p.Close()
			if time.Now().After(deadline) {
				t.Errorf("program %d still loaded after Close", id)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// The calibration on the hook itself gives a cost per iteration, and an
// Inject sized from it adds about that many ns per connect, as the
// kernel's own statistics time it.
func TestCalibrateOnHook(t *testing.T) {
	privtest.Require(t)
	ni, err := CalibrateOnHook()
	if err != nil {
		t.Fatal(err)
	}
	if !(ni > 0) || math.IsInf(ni, 0) {
		t.Fatalf("ns per iteration %v", ni)
	}
	t.Logf("on the hook: %.3f ns per iteration", ni)
}
