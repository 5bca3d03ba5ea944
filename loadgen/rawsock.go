package loadgen

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The client drives blocking sockets with raw syscalls, one goroutine per
// connection (netperf's thread-per-connection model): an rr operation is then
// exactly one write and one read, and a crr operation is socket, connect, write,
// read, close, as in a C loop. Go's netpoller would add an EAGAIN read, an
// epoll wait and a goroutine switch per operation, and net.Dial allocates. Run
// raises GOMAXPROCS above the worker count so a worker blocked in a syscall never
// holds the P another worker needs.

// endpoint is a resolved target with an optional source address.
type endpoint struct {
	family  int
	target  unix.Sockaddr
	source  unix.Sockaddr // nil: the kernel chooses
	nodelay bool
}

// forWorker returns a private copy: unix.Connect and Bind write into the
// Sockaddr they are given, so workers must not share one.
func (ep *endpoint) forWorker() *endpoint {
	c := *ep
	c.target = copySockaddr(ep.target)
	c.source = copySockaddr(ep.source)
	return &c
}

func copySockaddr(sa unix.Sockaddr) unix.Sockaddr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		c := *a
		return &c
	case *unix.SockaddrInet6:
		c := *a
		return &c
	}
	return sa
}

func resolveEndpoint(target, source string) (*endpoint, error) {
	ta, err := net.ResolveTCPAddr("tcp", target)
	if err != nil {
		return nil, fmt.Errorf("resolve target %s: %w", target, err)
	}
	if ta.IP == nil {
		return nil, fmt.Errorf("target %s: needs a host (e.g. 127.0.0.1:%d)", target, ta.Port)
	}
	ep := &endpoint{}
	v4 := ta.IP.To4() != nil
	ep.family = unix.AF_INET6
	if v4 {
		ep.family = unix.AF_INET
	}
	if ep.target, err = sockaddr(ta.IP, ta.Port, ta.Zone); err != nil {
		return nil, err
	}
	if source != "" {
		ip, zone, err := parseSource(source)
		if err != nil {
			return nil, err
		}
		if (ip.To4() != nil) != v4 {
			return nil, fmt.Errorf("source %s and target %s are of different address families", source, target)
		}
		if ep.source, err = sockaddr(ip, 0, zone); err != nil {
			return nil, err
		}
	}
	return ep, nil
}

// parseSource accepts an IP literal, optionally bracketed or with a zone.
func parseSource(s string) (net.IP, string, error) {
	host := s
	if h, _, err := net.SplitHostPort(s); err == nil {
		host = h
	}
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	ia, err := net.ResolveIPAddr("ip", host)
	if err != nil {
		return nil, "", fmt.Errorf("source %s: not an IP address", s)
	}
	return ia.IP, ia.Zone, nil
}

func sockaddr(ip net.IP, port int, zone string) (unix.Sockaddr, error) {
	if ip4 := ip.To4(); ip4 != nil {
		sa := &unix.SockaddrInet4{Port: port}
		copy(sa.Addr[:], ip4)
		return sa, nil
	}
	sa := &unix.SockaddrInet6{Port: port}
	copy(sa.Addr[:], ip.To16())
	if zone != "" {
		if ifi, err := net.InterfaceByName(zone); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		} else if n, err := strconv.Atoi(zone); err == nil {
			sa.ZoneId = uint32(n)
		} else {
			return nil, fmt.Errorf("unknown IPv6 zone %q", zone)
		}
	}
	return sa, nil
}

// dial opens a connected blocking socket for an operation that started at
// offset at (see guard); it allocates nothing: the sockaddrs are built once
// and reused. On success the guard stays armed for the rest of the operation.
func (ep *endpoint) dial(g *guard, at time.Duration) (int, error) {
	fd, err := unix.Socket(ep.family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, err
	}
	if err := ep.setup(fd); err != nil {
		unix.Close(fd)
		return -1, err
	}
	g.arm(fd, at)
	// A signal (the Go runtime sends some) may interrupt a blocking connect;
	// connect again resumes waiting, and EISCONN says the handshake
	// completed meanwhile.
	err = unix.Connect(fd, ep.target)
	for err == unix.EINTR {
		err = unix.Connect(fd, ep.target)
	}
	if err != nil && err != unix.EISCONN {
		if g.disarm() {
			err = errTimeout
		}
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func (ep *endpoint) setup(fd int) error {
	if ep.nodelay {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
			return err
		}
	}
	if ep.source != nil {
		// Defer the port choice to connect(), which picks a port unique for the
		// 4-tuple (and may reuse a TIME_WAIT one) instead of one unique for the
		// address: without it a bound crr client runs out of ports at once.
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		if err := unix.Bind(fd, ep.source); err != nil {
			return fmt.Errorf("bind source: %w", err)
		}
	}
	return nil
}

// errTimeout reports an operation the watchdog cut off (see guard).
var errTimeout = errors.New("socket timeout")

// writeFull writes all of b to the blocking socket fd.
func writeFull(fd int, b []byte) (int, error) { return transferFull(fd, b, unix.Write) }

// readFull reads exactly len(b) bytes from the blocking socket fd: io.EOF if
// the peer closed before the first byte, io.ErrUnexpectedEOF if in the middle.
func readFull(fd int, b []byte) (int, error) { return transferFull(fd, b, unix.Read) }

// transferFull repeats a read or write until all of b is done; EINTR (a
// signal) retries.
func transferFull(fd int, b []byte, transfer func(int, []byte) (int, error)) (int, error) {
	done := 0
	for done < len(b) {
		n, err := transfer(fd, b[done:])
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return done, err
		case n == 0 && done == 0:
			return 0, io.EOF
		case n == 0:
			return done, io.ErrUnexpectedEOF
		}
		done += n
	}
	return done, nil
}
