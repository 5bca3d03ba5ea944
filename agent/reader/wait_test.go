package reader

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/rlimit"

	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
)

// ringWriter loads a program that writes one batch of one zeroed close
// record into rb with the given bpf_ringbuf_output flags each time it runs.
func ringWriter(t *testing.T, rb *ebpf.Map, flags int64) *ebpf.Program {
	t.Helper()
	size := batchHeader + eventSize
	insns := asm.Instructions{
		// The batch on the stack, size bytes below r10: zeroes, then n = 1.
		asm.Mov.Imm(asm.R1, 0),
	}
	for off := 8; off <= size; off += 8 {
		insns = append(insns, asm.StoreMem(asm.RFP, int16(-off), asm.R1, asm.DWord))
	}
	insns = append(insns,
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreMem(asm.RFP, int16(-size), asm.R1, asm.Word),
		asm.LoadMapPtr(asm.R1, rb.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -int32(size)),
		asm.Mov.Imm(asm.R3, int32(size)),
		asm.Mov.Imm(asm.R4, int32(flags)),
		asm.FnRingbufOutput.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.SocketFilter, License: "GPL", Instructions: insns,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

// newTestRing is a 64 KiB ring buffer and a reader of it.
func newTestRing(t *testing.T) (*ebpf.Map, Reader) {
	t.Helper()
	privtest.Require(t)
	// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	rb, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rb.Close() })
	rd, err := NewRingbuf(rb)
	if err != nil {
		t.Fatal(err)
	}
	return rb, rd
}

const (
	rbNoWakeup    = 1 // BPF_RB_NO_WAKEUP
	rbForceWakeup = 2 // BPF_RB_FORCE_WAKEUP
)

// Wait parks in Go's netpoller and returns when the kernel signals the ring,
// long before its deadline; a record written without a wake-up waits for
// the deadline (the timer drain) and is then read all the same.
func TestRingWaitWakesOnKernelSignal(t *testing.T) {
	rb, rd := newTestRing(t)
	defer rd.Close()
	if rd.(*ringReader).poll == nil {
		t.Fatal("the ring buffer's fd did not join the netpoller: Wait would only sleep")
	}
	run := func(p *ebpf.Program) {
		if _, err := p.Run(&ebpf.RunOptions{Data: make([]byte, 14)}); err != nil {
			t.Fatal(err)
		}
	}
	var ev Event
	drain := func() (n int) {
		for rd.Read(&ev) == nil {
			n++
		}
		return n
	}

	quiet, loud := ringWriter(t, rb, rbNoWakeup), ringWriter(t, rb, rbForceWakeup)
	const deadline = 500 * time.Millisecond
	for _, c := range []struct {
		name  string
		prog  *ebpf.Program
		woken bool // Wait must return well before its deadline
	}{
		{"forced wake-up", loud, true},
		{"no wake-up", quiet, false},
	} {
		drain()
		done := make(chan time.Duration)
		start := time.Now()
		go func() {
			rd.Wait(deadline)
			done <- time.Since(start)
		}()
		// The program runs every 20 ms until Wait returns: Wait may not
		// have parked yet when one run signals (a loaded CI machine).
		var waited time.Duration
		runs := 0
	wait:
		for {
			run(c.prog)
			runs++
			select {
			case waited = <-done:
				break wait
			case <-time.After(20 * time.Millisecond):
			}
			if time.Since(start) > 10*deadline {
				t.Fatalf("%s: Wait still parked after %s", c.name, 10*deadline)
			}
		}
		if c.woken && waited >= deadline*8/10 {
			t.Errorf("%s: Wait returned after %s, at its deadline: the kernel's signal did not wake it", c.name, waited)
		}
		if !c.woken && waited < deadline*8/10 {
			t.Errorf("%s: Wait returned after %s, before its deadline with no signal", c.name, waited)
		}
		if n := drain(); n != runs {
			t.Errorf("%s: read %d records after Wait, want the %d written", c.name, n, runs)
		}
	}
}

// Close ends a parked Wait and makes Read report ErrClosed.
func TestRingCloseEndsWait(t *testing.T) {
	_, rd := newTestRing(t)
	done := make(chan struct{})
	go func() { rd.Wait(time.Minute); close(done) }()
	time.Sleep(50 * time.Millisecond)
	rd.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait still parked 5 s after Close")
	}
	var ev Event
	if err := rd.Read(&ev); err != ErrClosed {
		t.Errorf("Read after Close = %v, want ErrClosed", err)
	}
}
