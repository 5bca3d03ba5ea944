package observer

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// healthLimit is how long the observer may go without a successful flush,
// or its event reader without a sign of life, before /healthz reports it
// as not doing its job: three flush intervals, and never under 5 s (one
// slow flush of a full map, a long GC pause or a scrape holding the table
// must not restart the pod).
func healthLimit(flush time.Duration) time.Duration { return max(3*flush, 5*time.Second) }

// health is what /healthz reports: whether the observer runs, flushes, reads
// close records and still has its programs attached. The loops record into
// it without locks; check reads it on every request.
type health struct {
	now      func() time.Time
	limit    time.Duration
	attached func() error // nil when every program is still attached, in the kernel

	running   atomic.Bool
	started   atomic.Int64           // unix ns when Serve began
	lastFlush atomic.Int64           // unix ns when the last successful flush ended; 0: none yet
	flushErr  atomic.Pointer[string] // the last flush failure since the last success
	lastRead  atomic.Int64           // unix ns of the read loop's last sign of life
	readerEnd atomic.Pointer[string] // why the read loop returned
}

func newHealth(now func() time.Time, limit time.Duration, attached func() error) *health {
	return &health{now: now, limit: limit, attached: attached}
}

// start marks the observer running: the limits count from now.
func (h *health) start() {
	t := h.now().UnixNano()
	h.started.Store(t)
	h.lastRead.Store(t)
	h.readerEnd.Store(nil)
	h.running.Store(true)
}

func (h *health) stop() { h.running.Store(false) }

// flushed records a successful flush that ended now.
func (h *health) flushed() {
	h.lastFlush.Store(h.now().UnixNano())
	h.flushErr.Store(nil)
}

func (h *health) flushFailed(err error) {
	s := oneLine(err.Error())
	h.flushErr.Store(&s)
}

// readAlive records that the read loop is going round (it read, or found
// nothing to read).
func (h *health) readAlive() { h.lastRead.Store(h.now().UnixNano()) }

// readerStopped records that the read loop returned.
func (h *health) readerStopped(why string) {
	s := oneLine(why)
	h.readerEnd.Store(&s)
}

// LastFlush is when the last successful flush ended (zero: none yet).
func (h *health) LastFlush() time.Time {
	if ns := h.lastFlush.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// check returns nil when the observer is doing its job, else the reason
// it is not, on one line.
func (h *health) check() error {
	if !h.running.Load() {
		return errors.New("not running")
	}
	now := h.now()
	if why := h.readerEnd.Load(); why != nil {
		return fmt.Errorf("event reader stopped: %s", *why)
	}
	if age := now.Sub(time.Unix(0, h.lastRead.Load())); age > h.limit {
		return fmt.Errorf("event reader stopped: no sign of it for %s (limit %s)", age.Round(time.Millisecond), h.limit)
	}
	last, since := h.lastFlush.Load(), ""
	if last == 0 {
		last, since = h.started.Load(), " since start"
	}
	if age := now.Sub(time.Unix(0, last)); age > h.limit {
		msg := fmt.Sprintf("no successful flush%s for %s (limit %s)", since, age.Round(time.Millisecond), h.limit)
		if e := h.flushErr.Load(); e != nil {
			msg += ": " + *e
		}
		return errors.New(msg)
	}
	if h.attached != nil {
		if err := h.attached(); err != nil {
			return fmt.Errorf("program detached: %s", oneLine(err.Error()))
		}
	}
	return nil
}

// ServeHTTP answers /healthz: 200 "ok", or 503 with the reason on one line.
func (h *health) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	if err := h.check(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
