package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Config is one client run. Zero values of Size, Warmup and Timeout take the
// defaults below; Rate 0 means closed loop.
type Config struct {
	Mode        Mode
	Target      string        // host:port of a loadgen server
	Source      string        // optional source IP to bind (e.g. inside a netns)
	Duration    time.Duration // measured time, after the warm-up
	Warmup      time.Duration // run but not counted; negative means none
	Concurrency int           // connections (stream, rr) or parallel loops (crr)
	Size        int           // bytes per write (stream) or per request and response (rr, crr)
	Rate        float64       // total operations per second, open loop; 0: closed loop
	Timeout     time.Duration // an operation (connect, request, response) running longer fails
}

// Defaults.
const (
	DefaultStreamSize = 128 << 10
	DefaultRRSize     = 64
	DefaultWarmup     = time.Second
	DefaultTimeout    = 5 * time.Second
)

// withDefaults fills in zero fields.
func (c Config) withDefaults() Config {
	if c.Size == 0 {
		c.Size = DefaultRRSize
		if c.Mode == ModeStream {
			c.Size = DefaultStreamSize
		}
	}
	if c.Warmup == 0 {
		c.Warmup = DefaultWarmup
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// Validate reports the first invalid field, phrased for a command-line user.
func (c Config) Validate() error {
	if _, err := c.Mode.wire(); err != nil {
		return fmt.Errorf("--mode: %w", err)
	}
	switch {
	case c.Target == "":
		return errors.New("--target is required (host:port of a 'loadgen server')")
	case c.Duration <= 0:
		return fmt.Errorf("--duration must be positive, got %v", c.Duration)
	case c.Concurrency < 1 || c.Concurrency > 4096:
		return fmt.Errorf("--concurrency must be 1..4096, got %d", c.Concurrency)
	case c.Size < 0 || c.Size > MaxSize:
		return fmt.Errorf("--size must be 1..%d bytes, got %d", MaxSize, c.Size)
	case c.Rate < 0:
		return fmt.Errorf("--rate must be >= 0 operations per second, got %v", c.Rate)
	}
	return nil
}

// ConnectError is a target the client could not reach before the run started.
type ConnectError struct {
	Target string
	Err    error
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("connect %s: %v (is 'loadgen server --listen %s' running?)", e.Target, e.Err, e.Target)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// connectErr names a connect the watchdog cut off plainly.
func connectErr(err error) error {
	if errors.Is(err, errTimeout) {
		return unix.ETIMEDOUT
	}
	return err
}

// errorBackoff keeps a dead target from turning the error path into a busy loop.
const errorBackoff = time.Millisecond

// runner is the state the workers share, read-only during the run.
type runner struct {
	cfg     Config
	ep      *endpoint
	base    time.Time     // monotonic origin; times below are offsets from it
	start   time.Duration // workers start
	measure time.Duration // warm-up ends
	end     time.Duration // measurement ends
	// Open loop only: how long after the end a late worker may still send the
	// operations that were due inside the window (closed loop: 0).
	catchUp time.Duration
	stop    atomic.Bool // context cancelled
}

// worker is one connection's (or one crr loop's) private state; merged after
// the run, so the hot path takes no locks and shares no cache lines.
type worker struct {
	hist   Histogram
	ops    uint64
	bytes  uint64
	errors uint64
	first  error // the first error, reported as an example
	fd     int
	buf    []byte // stream: payload; rr: request; crr: header+request
	resp   []byte
	ep     *endpoint // private copy: dialing writes into its sockaddrs
	guard  *guard
	begin  time.Duration // start of the operation in flight
}

// Run drives the load described by cfg and returns the measured result. Errors
// during the run are counted in Result.Errors; an error is returned only for an
// invalid configuration or a target unreachable before the run starts.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	ep, err := resolveEndpoint(cfg.Target, cfg.Source)
	if err != nil {
		return Result{}, err
	}
	ep.nodelay = cfg.Mode != ModeStream
	r := &runner{cfg: cfg, ep: ep, base: time.Now()}

	// Every connect and operation from here on is watched (see guard).
	guards := make([]*guard, cfg.Concurrency+1)
	for i := range guards {
		guards[i] = newGuard()
	}
	stopWatchdog := make(chan struct{})
	defer close(stopWatchdog)
	go watchdog(guards, r.base, cfg.Timeout, stopWatchdog)

	// Reachability first, so a missing server is one clear error.
	probe := guards[cfg.Concurrency]
	fd, err := ep.dial(probe, time.Since(r.base))
	if err != nil {
		return Result{}, &ConnectError{Target: cfg.Target, Err: connectErr(err)}
	}
	probe.disarm()
	unix.Close(fd)

	workers := make([]*worker, cfg.Concurrency)
	defer func() {
		for _, w := range workers {
			if w != nil && w.fd >= 0 {
				unix.Close(w.fd)
			}
		}
	}()
	for i := range workers {
		w, err := r.newWorker(guards[i])
		if err != nil {
			return Result{}, &ConnectError{Target: cfg.Target, Err: connectErr(err)}
		}
		workers[i] = w
	}

	// One P per blocked worker plus one for the runtime (see rawsock.go).
	if want := cfg.Concurrency + 1; runtime.GOMAXPROCS(0) < want {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(want))
	}
	stopWatch := context.AfterFunc(ctx, func() { r.stop.Store(true) })
	defer stopWatch()

	r.start = time.Since(r.base)
	r.measure = r.start + cfg.Warmup
	r.end = r.measure + cfg.Duration
	if cfg.Rate > 0 {
		r.catchUp = max(cfg.Duration/10, 100*time.Millisecond)
	}
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(r, i)
		}()
	}
	wg.Wait()

	var total worker
	for _, w := range workers {
		total.hist.Merge(&w.hist)
		total.ops += w.ops
		total.bytes += w.bytes
		total.errors += w.errors
		if total.first == nil {
			total.first = w.first
		}
	}
	measured := cfg.Duration
	if r.stop.Load() { // interrupted: rates over the part of the window that ran
		measured = min(measured, max(time.Since(r.base)-r.measure, time.Millisecond))
	}
	return newResult(cfg, measured, &total), nil
}

func (r *runner) newWorker(g *guard) (*worker, error) {
	cfg := r.cfg
	w := &worker{fd: -1, ep: r.ep.forWorker(), guard: g}
	switch cfg.Mode {
	case ModeStream:
		w.buf = make([]byte, cfg.Size)
	case ModeRR:
		w.buf = make([]byte, cfg.Size)
		w.resp = make([]byte, cfg.Size)
	case ModeCRR:
		// Header and request leave in one write, as a C client would send them.
		w.buf = make([]byte, headerLen+cfg.Size)
		w.resp = make([]byte, cfg.Size)
		if err := putHeader(w.buf, cfg.Mode, cfg.Size); err != nil {
			return nil, err
		}
		return w, nil
	}
	return w, w.connect(r)
}

// connect opens the persistent connection of a stream or rr worker and sends
// its header.
func (w *worker) connect(r *runner) error {
	fd, err := w.ep.dial(w.guard, time.Since(r.base))
	if err != nil {
		return err
	}
	var hdr [headerLen]byte
	if err = putHeader(hdr[:], r.cfg.Mode, r.cfg.Size); err == nil {
		_, err = writeFull(fd, hdr[:])
	}
	if w.guard.disarm() && err != nil {
		err = errTimeout
	}
	if err != nil {
		unix.Close(fd)
		return err
	}
	w.fd = fd
	return nil
}

func (w *worker) closeConn() {
	if w.fd >= 0 {
		unix.Close(w.fd)
		w.fd = -1
	}
}

// op performs one operation and returns the payload bytes it moved.
// The operation started at w.begin; the guard watches it throughout.
func (w *worker) op(r *runner) (uint64, error) {
	var n, m int
	var err error
	switch r.cfg.Mode {
	case ModeStream:
		w.guard.arm(w.fd, w.begin)
		n, err = writeFull(w.fd, w.buf)
	case ModeRR:
		w.guard.arm(w.fd, w.begin)
		if n, err = writeFull(w.fd, w.buf); err == nil {
			m, err = readFull(w.fd, w.resp)
		}
	default: // crr
		fd, derr := w.ep.dial(w.guard, w.begin)
		if derr != nil {
			return 0, derr
		}
		n, err = writeFull(fd, w.buf)
		n = max(n-headerLen, 0)
		if err == nil {
			m, err = readFull(fd, w.resp)
		}
		defer unix.Close(fd) // after disarm: the watchdog must not see it closed
	}
	if w.guard.disarm() && err != nil {
		err = errTimeout
	}
	return uint64(n + m), err
}

// fail counts an error and pauses briefly.
func (w *worker) fail(err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = errors.New("connection closed by server")
	}
	if w.first == nil {
		w.first = err
	}
	w.errors++
	time.Sleep(errorBackoff)
}

// run issues operations until the end of the measurement. Closed loop: the next
// operation starts when the previous one ends, and latency is its service time.
// Open loop (Rate > 0): operation k of this worker is due at a fixed time
// (phase-shifted per worker), and its latency is measured from that due time,
// so a stall that delays later operations shows up in their latency instead of
// being hidden by the loop waiting for it (coordinated omission). A worker that
// is behind at the end may keep sending operations due inside the window for
// catchUp longer; what it still cannot send is missing from Ops.
func (w *worker) run(r *runner, id int) {
	n := r.cfg.Concurrency
	var interval, due time.Duration
	if r.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(n) / r.cfg.Rate)
		due = r.start + interval*time.Duration(id)/time.Duration(n)
		preciseSleeper()
	}
	for !r.stop.Load() {
		now := time.Since(r.base)
		begin := now
		if interval > 0 {
			if due >= r.end {
				break
			}
			if due > now {
				sleepUntil(r.base, due)
			}
			begin = due
			due += interval
		}
		if now >= r.end+r.catchUp {
			break
		}
		if w.fd < 0 && r.cfg.Mode != ModeCRR {
			if err := w.connect(r); err != nil {
				w.fail(fmt.Errorf("connect: %w", connectErr(err)))
				continue
			}
		}
		w.begin = max(now, begin) // open loop: after sleeping until due
		moved, err := w.op(r)
		counted := begin >= r.measure
		if counted {
			w.bytes += moved
		}
		if err != nil {
			w.closeConn()
			w.fail(err)
			continue
		}
		if counted {
			w.ops++
			w.hist.Record(int64(time.Since(r.base) - begin))
		}
	}
}
