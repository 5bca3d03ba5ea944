package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// Holding many connections: one process opens Conns loopback connections
// to a listener of its own and keeps both ends open, idle or with a trickle
// of one byte per connection per interval. Both ends live in this process
// (2 descriptors per connection), so the per-process file limit caps Conns;
// the `loadgen hold` command spreads a larger count over several processes.
// One thread drives them all: the trickle's writes and an epoll loop that
// reads what arrives, so holding costs no thread and no goroutine per
// connection.

// HoldConfig is one process's share of held connections.
type HoldConfig struct {
	Conns   int           // connections; the process holds 2*Conns sockets
	Listen  string        // IP the listener binds (port chosen by the kernel)
	Source  string        // source IP of the client ends ("" = Listen's)
	Trickle time.Duration // every connection sends one byte per Trickle; 0 idle
}

// HoldStats are what holding processes did; sent == received once drained.
type HoldStats struct {
	Conns         int     `json:"conns"`
	BytesSent     uint64  `json:"bytes_sent"`
	BytesReceived uint64  `json:"bytes_received"`
	CPUSec        float64 `json:"cpu_s"` // user+system CPU while holding (opening excluded)
	HeldSec       float64 `json:"held_s"`
}

// Add folds another process's stats into s (times: the longest).
func (s *HoldStats) Add(o HoldStats) {
	s.Conns += o.Conns
	s.BytesSent += o.BytesSent
	s.BytesReceived += o.BytesReceived
	s.CPUSec += o.CPUSec
	s.HeldSec = max(s.HeldSec, o.HeldSec)
}

// FilesPerHold is the descriptors a holding process needs besides its
// connections' two each (listener, epoll, standard streams, runtime).
const FilesPerHold = 32

// Holder keeps a process's connections open.
type Holder struct {
	cfg    HoldConfig
	lfd    int
	epfd   int
	client []int
	server []int
	st     HoldStats
}

// OpenHold opens cfg.Conns connections; Close releases them.
func OpenHold(cfg HoldConfig) (*Holder, error) {
	if cfg.Conns < 0 {
		return nil, fmt.Errorf("hold: %d connections: want 0 or more", cfg.Conns)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && uint64(2*cfg.Conns+FilesPerHold) > lim.Cur {
		return nil, fmt.Errorf("hold: %d connections need %d open files, this process may open %d: hold fewer per process (--per-process)",
			cfg.Conns, 2*cfg.Conns+FilesPerHold, lim.Cur)
	}
	lip := net.ParseIP(cfg.Listen)
	if lip == nil {
		return nil, fmt.Errorf("hold: listen address %q: not an IP address", cfg.Listen)
	}
	src := lip
	if cfg.Source != "" {
		if src = net.ParseIP(cfg.Source); src == nil {
			return nil, fmt.Errorf("hold: source address %q: not an IP address", cfg.Source)
		}
	}
	if (src.To4() != nil) != (lip.To4() != nil) {
		return nil, fmt.Errorf("hold: source %s and listen address %s are of different address families", src, lip)
	}
	h := &Holder{cfg: cfg, lfd: -1, epfd: -1}
	if err := h.open(lip, src); err != nil {
		h.Close()
		return nil, err
	}
	h.st.Conns = cfg.Conns
	return h, nil
}

func (h *Holder) open(lip, src net.IP) error {
	family := unix.AF_INET
	if lip.To4() == nil {
		family = unix.AF_INET6
	}
	lsa, err := sockaddr(lip, 0, "")
	if err != nil {
		return err
	}
	if h.lfd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP); err != nil {
		return fmt.Errorf("hold: listener: %w", err)
	}
	if err := unix.Bind(h.lfd, lsa); err != nil {
		return fmt.Errorf("hold: bind %s: %w", lip, err)
	}
	if err := unix.Listen(h.lfd, 4096); err != nil {
		return fmt.Errorf("hold: listen: %w", err)
	}
	bound, err := unix.Getsockname(h.lfd)
	if err != nil {
		return err
	}
	ep := &endpoint{family: family, target: bound}
	if ep.source, err = sockaddr(src, 0, ""); err != nil {
		return err
	}
	if h.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("hold: epoll: %w", err)
	}
	h.client = make([]int, 0, h.cfg.Conns)
	h.server = make([]int, 0, h.cfg.Conns)
	var g guard // never armed: a loopback connect to our own listener cannot stall
	for range h.cfg.Conns {
		c, err := ep.dial(&g, 0)
		if err != nil {
			return fmt.Errorf("hold: connection %d of %d: %w (more source addresses or fewer connections per process)",
				len(h.client)+1, h.cfg.Conns, err)
		}
		h.client = append(h.client, c)
		s, _, err := unix.Accept4(h.lfd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
		if err != nil {
			return fmt.Errorf("hold: accept: %w", err)
		}
		h.server = append(h.server, s)
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(s)}
		if err := unix.EpollCtl(h.epfd, unix.EPOLL_CTL_ADD, s, &ev); err != nil {
			return fmt.Errorf("hold: epoll add: %w", err)
		}
	}
	return nil
}

// Run keeps the connections until ctx ends: idle, or trickling one byte per
// connection per cfg.Trickle, spread evenly over the interval. Before it
// returns it reads what is still in flight, so the stats balance.
func (h *Holder) Run(ctx context.Context) (st HoldStats, err error) {
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 4096)
	one := []byte{'h'}
	start := time.Now()
	cpu0 := processCPU()
	defer func() {
		h.st.CPUSec = processCPU() - cpu0
		h.st.HeldSec = time.Since(start).Seconds()
		st = h.st
	}()
	var written uint64 // trickle writes done since start
	next := 0          // connection the next write goes to
	for ctx.Err() == nil {
		if h.cfg.Trickle > 0 && len(h.client) > 0 {
			due := uint64(time.Since(start) * time.Duration(len(h.client)) / h.cfg.Trickle)
			for ; written < due; written++ {
				if _, err := writeFull(h.client[next], one); err != nil {
					return h.st, fmt.Errorf("hold: trickle write: %w", err)
				}
				h.st.BytesSent++
				if next++; next == len(h.client) {
					next = 0
				}
			}
		}
		if err := h.read(events, buf, 10); err != nil {
			return h.st, err
		}
	}
	for deadline := time.Now().Add(time.Second); h.st.BytesReceived < h.st.BytesSent && time.Now().Before(deadline); {
		if err := h.read(events, buf, 10); err != nil {
			return h.st, err
		}
	}
	return h.st, nil
}

// processCPU is this process's user+system CPU time in seconds.
func processCPU() float64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// read waits up to ms milliseconds for readable server ends and drains them.
func (h *Holder) read(events []unix.EpollEvent, buf []byte, ms int) error {
	n, err := unix.EpollWait(h.epfd, events, ms)
	if errors.Is(err, unix.EINTR) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hold: epoll wait: %w", err)
	}
	for _, ev := range events[:n] {
		for {
			m, err := unix.Read(int(ev.Fd), buf)
			if m > 0 {
				h.st.BytesReceived += uint64(m)
			}
			if m <= 0 || err != nil {
				break
			}
		}
	}
	return nil
}

// Close closes every socket.
func (h *Holder) Close() error {
	for _, fd := range h.client {
		unix.Close(fd)
	}
	for _, fd := range h.server {
		unix.Close(fd)
	}
	h.client, h.server = nil, nil
	for _, fd := range []int{h.epfd, h.lfd} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	h.epfd, h.lfd = -1, -1
	return nil
}

// Port is the holder's listening port.
func (h *Holder) Port() int {
	sa, err := unix.Getsockname(h.lfd)
	if err != nil {
		return 0
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port
	case *unix.SockaddrInet6:
		return a.Port
	}
	return 0
}
