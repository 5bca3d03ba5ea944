package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startServer runs an in-process server on addr (port 0) until the test ends.
func startServer(t *testing.T, addr string) *Server {
	t.Helper()
	s, err := Listen(addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// settled waits until the server has accepted at least accepted connections
// and finished with every one, so its counters are final.
func settled(t *testing.T, s *Server, accepted uint64) ServerStats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := s.Stats()
		done := st.Active == 0 && st.Accepted >= accepted
		if done || time.Now().After(deadline) {
			if !done {
				t.Fatalf("server not settled: %+v, want %d connections accepted and none open", st, accepted)
			}
			return st
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runOnce(cfg Config) (Result, error) { return Run(context.Background(), cfg) }

func run(t *testing.T, cfg Config) Result {
	t.Helper()
	res, err := runOnce(cfg)
	if err != nil {
		t.Fatalf("Run(%+v): %v", cfg, err)
	}
	if res.Errors != 0 {
		t.Fatalf("%d errors, first: %s", res.Errors, res.FirstError)
	}
	return res
}

// Without a warm-up every byte and operation the client made is counted, so the
// server's own counters must agree exactly.
func TestCountsMatchServer(t *testing.T) {
	for _, family := range []struct{ name, addr string }{{"ipv4", "127.0.0.1:0"}, {"ipv6", "[::1]:0"}} {
		for _, mode := range []Mode{ModeStream, ModeRR, ModeCRR} {
			t.Run(family.name+"/"+string(mode), func(t *testing.T) {
				t.Parallel()
				s := startServer(t, family.addr)
				size := 1000
				if mode == ModeStream {
					size = 64 << 10
				}
				res := run(t, Config{Mode: mode, Target: s.Addr().String(), Duration: 300 * time.Millisecond,
					Warmup: -1, Concurrency: 3, Size: size})
				if res.Ops == 0 {
					t.Fatal("no operations")
				}
				// One reachability probe, then one connection per worker or per crr op.
				wantConns := 1 + uint64(3)
				if mode == ModeCRR {
					wantConns = 1 + res.Ops
				}
				st := settled(t, s, wantConns)
				switch mode {
				case ModeStream:
					if res.Bytes != st.BytesReceived || res.Bytes != res.Ops*uint64(size) {
						t.Errorf("client sent %d bytes in %d writes of %d, server received %d", res.Bytes, res.Ops, size, st.BytesReceived)
					}
				default:
					if res.Ops != st.Ops {
						t.Errorf("client ops %d, server ops %d", res.Ops, st.Ops)
					}
					if res.Bytes != st.BytesReceived+st.BytesSent || res.Bytes != 2*res.Ops*uint64(size) {
						t.Errorf("client bytes %d (%d ops), server received %d + sent %d", res.Bytes, res.Ops, st.BytesReceived, st.BytesSent)
					}
				}
				if st.Accepted != wantConns || st.BadHeaders != 0 {
					t.Errorf("server accepted %d connections (want %d), %d bad headers", st.Accepted, wantConns, st.BadHeaders)
				}
				if res.Latency.P50 == 0 || res.Latency.P50 > res.Latency.P99 || res.Latency.P99 > res.Latency.Max {
					t.Errorf("implausible latency %+v", res.Latency)
				}
			})
		}
	}
}

func TestWarmupIsNotCounted(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	res := run(t, Config{Mode: ModeRR, Target: s.Addr().String(), Duration: 200 * time.Millisecond,
		Warmup: 200 * time.Millisecond, Concurrency: 1})
	st := settled(t, s, 2)
	if res.Ops == 0 || res.Ops >= st.Ops {
		t.Fatalf("client counted %d ops, server answered %d: the warm-up should be excluded", res.Ops, st.Ops)
	}
}

// Open loop: the achieved rate is the requested one, within 5%.
func TestRateIsAccurate(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	const rate, secs = 2000.0, 2.0
	res := run(t, Config{Mode: ModeRR, Target: s.Addr().String(), Duration: time.Duration(secs * float64(time.Second)),
		Warmup: 200 * time.Millisecond, Concurrency: 4, Rate: rate})
	if got := res.OpsPerSec; got < 0.95*rate || got > 1.05*rate {
		t.Fatalf("asked for %v ops/s, got %v (%d ops)", rate, got, res.Ops)
	}
}

// A stall on the server must show in open-loop latency even though the
// client's loop is blocked while it lasts (coordinated omission).
func TestOpenLoopLatencySeesStalls(t *testing.T) {
	// A one-shot server that answers, then stalls 100 ms once, then answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, headerLen+64)
				if _, err := io.ReadFull(c, buf[:headerLen]); err != nil {
					return
				}
				for i := 0; ; i++ {
					if _, err := io.ReadFull(c, buf[:64]); err != nil {
						return
					}
					if i == 200 {
						time.Sleep(100 * time.Millisecond)
					}
					if _, err := c.Write(buf[:64]); err != nil {
						return
					}
				}
			}()
		}
	}()
	res := run(t, Config{Mode: ModeRR, Target: ln.Addr().String(), Duration: 500 * time.Millisecond,
		Warmup: -1, Concurrency: 1, Rate: 1000})
	// At 1000/s about 100 operations were due during the stall, with latencies
	// spread from 100 ms down to 0: p90 of 500 ops must sit well above 1 ms.
	// A closed-loop measurement would show one slow op and a fast p90.
	if res.Latency.P90 < uint64(2*time.Millisecond) {
		t.Fatalf("p90 %v hides the 100 ms stall: %+v", time.Duration(res.Latency.P90), res.Latency)
	}
}

func TestServerSurvivesGarbageAndAbruptCloses(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	addr := s.Addr().String()
	dial := func() *net.TCPConn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.TCPConn)
	}
	// Garbage: the server closes the connection.
	c := dial()
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	// EOF, or a reset since the server closes with the garbage unread.
	if _, err := c.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("after garbage: read %v, want the server to close", err)
	}
	c.Close()
	// A size the server must refuse (0 for rr).
	c = dial()
	c.Write([]byte{'L', 'G', version, 'r', 0, 0, 0, 0})
	c.Close()
	// Half a header, then gone.
	c = dial()
	c.Write([]byte("LG"))
	c.Close()
	// Reset in the middle of a stream and of an rr request.
	for _, hdr := range [][]byte{{'L', 'G', version, 's', 0, 1, 0, 0}, {'L', 'G', version, 'r', 0, 0, 1, 0}} {
		c = dial()
		c.Write(append(hdr, make([]byte, 100)...))
		c.SetLinger(0)
		c.Close()
	}
	if st := settled(t, s, 5); st.BadHeaders != 3 {
		t.Errorf("bad headers %d, want 3", st.BadHeaders)
	}
	// Still serving.
	run(t, Config{Mode: ModeCRR, Target: addr, Duration: 100 * time.Millisecond, Warmup: -1, Concurrency: 2})
}

func TestUnreachableTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err = Run(context.Background(), Config{Mode: ModeRR, Target: addr, Duration: time.Second, Concurrency: 1})
	var ce *ConnectError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a ConnectError", err)
	}
	want := "connect " + addr + ": connection refused (is 'loadgen server --listen " + addr + "' running?)"
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

func TestSourceAddress(t *testing.T) {
	s := startServer(t, "[::]:0")
	port := s.Addr().(*net.TCPAddr).Port
	for _, c := range []struct{ target, source string }{
		{net.JoinHostPort("127.0.0.1", itoa(port)), "127.0.0.2"},
		{net.JoinHostPort("::1", itoa(port)), "::1"},
	} {
		run(t, Config{Mode: ModeCRR, Target: c.target, Source: c.source, Duration: 100 * time.Millisecond,
			Warmup: -1, Concurrency: 1})
	}
	_, err := Run(context.Background(), Config{Mode: ModeRR, Target: "127.0.0.1:1", Source: "::1", Duration: time.Second, Concurrency: 1})
	if err == nil || !strings.Contains(err.Error(), "different address families") {
		t.Fatalf("mixed families: got %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestMain doubles as a server process for TestHotPathDoesNotAllocate, whose
// allocation count must not include the server's.
func TestMain(m *testing.M) {
	if addr := os.Getenv("LOADGEN_TEST_SERVER"); addr != "" {
		s, err := Listen(addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(s.Addr())
		go func() { io.Copy(io.Discard, os.Stdin); os.Exit(0) }() // exit with the parent
		s.Serve()
		return
	}
	os.Exit(m.Run())
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOADGEN_TEST_SERVER=127.0.0.1:0")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	var addr string
	if _, err := fmt.Fscanln(stdout, &addr); err != nil {
		t.Fatalf("server process: %v", err)
	}
	for _, mode := range []Mode{ModeRR, ModeCRR, ModeStream} {
		cfg := Config{Mode: mode, Target: addr, Concurrency: 1, Duration: time.Second}.withDefaults()
		ep, err := resolveEndpoint(cfg.Target, "")
		if err != nil {
			t.Fatal(err)
		}
		r := &runner{cfg: cfg, ep: ep, base: time.Now()}
		w, err := r.newWorker(newGuard())
		if err != nil {
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(200, func() {
			if _, err := w.op(r); err != nil {
				t.Fatal(err)
			}
			w.hist.Record(1000)
		})
		w.closeConn()
		if allocs != 0 {
			t.Errorf("%s: %v allocations per operation", mode, allocs)
		}
	}
}

// A peer that accepts and then never answers (or never reads) must not hang
// a worker: the watchdog cuts each stalled operation off after --timeout,
// the run ends on time, and every cut-off is a counted "socket timeout".
func TestStalledPeerTimesOut(t *testing.T) {
	for _, mode := range []Mode{ModeCRR, ModeRR, ModeStream} {
		t.Run(string(mode), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() { // accepts, never reads or writes; closes all once ln closes
				var held []net.Conn
				defer func() {
					for _, c := range held {
						c.Close()
					}
				}()
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					held = append(held, c)
				}
			}()
			const timeout = 200 * time.Millisecond
			start := time.Now()
			res, err := Run(context.Background(), Config{Mode: mode, Target: ln.Addr().String(),
				Duration: time.Second, Warmup: -1, Concurrency: 2, Timeout: timeout})
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			// A stream's writes fill the socket buffers before one blocks, so
			// some complete; a request never gets its response.
			if mode != ModeStream && res.Ops != 0 {
				t.Errorf("%d operations completed against a peer that never answers", res.Ops)
			}
			// Each worker: a cut-off every 200-250 ms (stream: after filling
			// the buffers of a fresh connection first).
			if min := map[bool]uint64{true: 2, false: 4}[mode == ModeStream]; res.Errors < min || res.Errors > 20 {
				t.Errorf("%d errors in 1 s with a 200 ms timeout and 2 workers, want %d-20", res.Errors, min)
			}
			if !strings.Contains(res.FirstError, "socket timeout") {
				t.Errorf("first error %q, want a socket timeout", res.FirstError)
			}
			if took > time.Second+2*timeout {
				t.Errorf("run took %v, want about 1 s: a stalled worker held it up", took)
			}
		})
	}
}
