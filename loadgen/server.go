package loadgen

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ServerStats are the server's own counters: the ground truth a test compares
// the client's report against.
type ServerStats struct {
	Accepted      uint64 // connections accepted
	Active        int64  // connections currently open
	BadHeaders    uint64 // connections closed for a malformed header
	BytesReceived uint64 // payload bytes read (headers excluded)
	BytesSent     uint64 // payload bytes written
	Ops           uint64 // rr/crr responses fully written
}

// Server answers every mode on one listening socket; the mode is chosen per
// connection by the header (see protocol.go).
//
// Like the client it uses blocking sockets, one goroutine (and so one thread
// while it waits) per connection, as netperf's server does: a request wakes the
// thread blocked in read directly. It raises GOMAXPROCS, never lowers it, to
// stay above the number of open connections. Go's netpoller costs an epoll round trip
// and a goroutine hand-off per request, which made the server, not the system
// under test, the bottleneck for rr on a busy 2-core machine.
type Server struct {
	lfd  int
	addr *net.TCPAddr

	accepted, badHeaders, bytesRx, bytesTx, ops atomic.Uint64
	active                                      atomic.Int64

	mu      sync.Mutex
	conns   map[int]struct{}
	closed  bool
	serving bool
	wg      sync.WaitGroup
}

// Listen opens the listening socket; call Serve to answer connections. An
// address without a host (":5201") listens on every IPv4 and IPv6 address.
func Listen(addr string) (*Server, error) {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	family, dual := unix.AF_INET6, false
	ip := ta.IP
	switch {
	case ip == nil || ip.IsUnspecified() && ip.To4() == nil:
		ip, dual = net.IPv6unspecified, true
	case ip.To4() != nil:
		family = unix.AF_INET
	}
	sa, err := sockaddr(ip, ta.Port, ta.Zone)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if err := listenOn(fd, sa, dual); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return &Server{lfd: fd, addr: tcpAddr(bound), conns: make(map[int]struct{})}, nil
}

func listenOn(fd int, sa unix.Sockaddr, dual bool) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return err
	}
	if dual {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return err
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return err
	}
	return unix.Listen(fd, 4096)
}

func tcpAddr(sa unix.Sockaddr) *net.TCPAddr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return &net.TCPAddr{}
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.addr }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		Accepted:      s.accepted.Load(),
		Active:        s.active.Load(),
		BadHeaders:    s.badHeaders.Load(),
		BytesReceived: s.bytesRx.Load(),
		BytesSent:     s.bytesTx.Load(),
		Ops:           s.ops.Load(),
	}
}

// Serve accepts connections until Close; it returns nil after Close.
func (s *Server) Serve() error {
	s.mu.Lock()
	if s.closed || s.serving {
		s.mu.Unlock()
		return errors.New("loadgen server: Serve called twice or after Close")
	}
	s.serving = true
	s.mu.Unlock()
	defer unix.Close(s.lfd)
	for {
		fd, _, err := unix.Accept4(s.lfd, unix.SOCK_CLOEXEC)
		if err != nil {
			if s.isClosed() {
				return nil
			}
			switch err {
			case unix.EINTR, unix.ECONNABORTED:
			case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
				time.Sleep(10 * time.Millisecond) // may clear as connections close
			default:
				return fmt.Errorf("accept: %w", err)
			}
			continue
		}
		if !s.track(fd) {
			unix.Close(fd)
			return nil
		}
		s.accepted.Add(1)
		go s.handle(fd)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops accepting, shuts every open connection down and waits for their
// handlers to return.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	// shutdown, not close, wakes a thread blocked in accept or read.
	unix.Shutdown(s.lfd, unix.SHUT_RDWR)
	if !s.serving {
		unix.Close(s.lfd)
	}
	for fd := range s.conns {
		unix.Shutdown(fd, unix.SHUT_RDWR)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) track(fd int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[fd] = struct{}{}
	s.wg.Add(1)
	s.active.Add(1)
	// Every open connection's handler may sit in a blocking syscall holding a
	// P; keep a P free for a new connection, or it would wait for the runtime's
	// sysmon to retake one (20 µs to 10 ms). Doubling keeps the stop-the-world
	// GOMAXPROCS calls rare, and Ps stay near the peak connection count (a huge
	// fixed value would let each GC cycle start hundreds of mark workers).
	if want := len(s.conns) + 2; want > runtime.GOMAXPROCS(0) && want <= maxProcs {
		procs := runtime.GOMAXPROCS(0)
		for procs < want {
			procs *= 2
		}
		runtime.GOMAXPROCS(min(procs, maxProcs))
	}
	return true
}

// maxProcs caps GOMAXPROCS; beyond it, connections wait for sysmon.
const maxProcs = 8192

func (s *Server) untrack(fd int) {
	s.mu.Lock()
	delete(s.conns, fd)
	unix.Close(fd)
	s.mu.Unlock()
	s.active.Add(-1)
	s.wg.Done()
}

// Buffers are pooled so that crr's thousands of short connections per second
// do not each allocate one.
var bufPool = sync.Pool{New: func() any { b := make([]byte, streamReadSize); return &b }}

const streamReadSize = 256 << 10

func (s *Server) handle(fd int) {
	defer s.untrack(fd)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	if _, err := readFull(fd, buf[:headerLen]); err != nil {
		// A close before any byte (a reachability probe, an aborted client)
		// is not garbage; a header cut short is.
		if err != io.EOF {
			s.badHeaders.Add(1)
		}
		return
	}
	mode, size, err := parseHeader(buf[:headerLen])
	if err != nil {
		s.badHeaders.Add(1)
		return
	}
	if mode == ModeStream {
		s.sink(fd, buf)
		return
	}
	if size > len(buf) {
		buf = make([]byte, size)
	}
	s.echo(fd, buf[:size])
}

// sink reads and discards until the client closes.
func (s *Server) sink(fd int, buf []byte) {
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return
		}
		s.bytesRx.Add(uint64(n))
	}
}

// echo answers each len(buf)-byte request with len(buf) bytes until EOF.
func (s *Server) echo(fd int, buf []byte) {
	for {
		n, err := readFull(fd, buf)
		s.bytesRx.Add(uint64(n))
		if err != nil {
			return
		}
		n, err = writeFull(fd, buf)
		s.bytesTx.Add(uint64(n))
		if err != nil {
			return
		}
		s.ops.Add(1)
	}
}
