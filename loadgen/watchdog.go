package loadgen

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A stalled peer must not hang a worker, but a timeout set per socket costs
// crr two setsockopt calls per operation (a C loop makes none). Instead each
// operation registers its socket in a guard, and one watchdog shuts down the
// socket of an operation that has run longer than the timeout: shutdown(2)
// wakes a blocked connect, read or write, which then fails. The guard's lock
// orders shutdown against the worker releasing the socket, so the watchdog
// never touches a descriptor that was closed and perhaps reused.
type guard struct {
	mu      sync.Mutex
	fd      int           // socket of the operation in flight; -1 when none
	started time.Duration // when that operation started (offset from runner.base)
	tripped bool          // the watchdog shut fd down
}

func newGuard() *guard { return &guard{fd: -1} }

// arm registers fd for the operation that started at offset at.
func (g *guard) arm(fd int, at time.Duration) {
	g.mu.Lock()
	g.fd, g.started, g.tripped = fd, at, false
	g.mu.Unlock()
}

// disarm ends the operation; it reports whether the watchdog cut it short.
// After disarm the caller may close fd.
func (g *guard) disarm() (tripped bool) {
	g.mu.Lock()
	tripped = g.tripped
	g.fd = -1
	g.mu.Unlock()
	return tripped
}

// expire shuts down the socket of an operation older than limit.
func (g *guard) expire(now, limit time.Duration) {
	g.mu.Lock()
	if g.fd >= 0 && !g.tripped && now-g.started > limit {
		_ = unix.Shutdown(g.fd, unix.SHUT_RDWR)
		g.tripped = true
	}
	g.mu.Unlock()
}

// watchdog checks the guards until stop is closed, often enough that an
// operation is cut off between limit and 1.25 x limit.
func watchdog(guards []*guard, base time.Time, limit time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(max(limit/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			now := time.Since(base)
			for _, g := range guards {
				g.expire(now, limit)
			}
		}
	}
}
