package observer

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/config"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/reader"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
)

// fakeClock is an injected clock the test moves by hand; safe for the
// observer's goroutines.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// TestHealthzReasons drives every reason /healthz gives to 503 and back to
// 200, on an injected clock: not serving, no successful flush for longer
// than the limit (with the flush's error), an event reader that gave no
// sign of life for that long or returned, and a detached program.
func TestHealthzReasons(t *testing.T) {
	clk := newFakeClock()
	var detached atomic.Pointer[error]
	h := newHealth(clk.Now, healthLimit(100*time.Millisecond), func() error {
		if err := detached.Load(); err != nil {
			return *err
		}
		return nil
	})
	if h.limit != 5*time.Second {
		t.Fatalf("limit %s at a 100ms flush interval, want the 5s floor", h.limit)
	}
	if l := healthLimit(10 * time.Second); l != 30*time.Second {
		t.Fatalf("limit %s at a 10s flush interval, want three intervals", l)
	}
	want := func(step string, code int, reason string) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		body := rec.Body.String()
		if rec.Code != code || !strings.Contains(body, reason) || strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") {
			t.Errorf("%s: /healthz %d %q; want %d and one line with %q", step, rec.Code, body, code, reason)
		}
	}
	want("before Serve", 503, "not running")
	h.start()
	want("just started", 200, "ok")

	// Flushes: none since start, then failing, then stale.
	clk.Advance(6 * time.Second)
	h.readAlive()
	want("no flush since start", 503, "no successful flush since start for 6s (limit 5s)")
	h.flushFailed(errors.New("read connection map: injected\nsecond line"))
	want("flushes failing", 503, "no successful flush since start for 6s (limit 5s): read connection map: injected second line")
	h.flushed()
	want("flushed", 200, "ok")
	clk.Advance(4 * time.Second)
	h.readAlive()
	want("last flush within the limit", 200, "ok")
	clk.Advance(2 * time.Second)
	h.readAlive()
	want("last flush too old", 503, "no successful flush for 6s (limit 5s)")
	h.flushed()
	want("flushing again", 200, "ok")

	// The event reader: stuck (applying a record, or every read failing),
	// then going round again.
	clk.Advance(6 * time.Second)
	h.flushed()
	want("reader stalled", 503, "event reader stopped: no sign of it for 6s (limit 5s)")
	h.readAlive()
	want("reader alive", 200, "ok")

	// A program detached, in the kernel, then attached again.
	err := errors.New("sock_ops detached: its link 7 has no cgroup any more")
	detached.Store(&err)
	want("detached", 503, "program detached: sock_ops detached")
	detached.Store(nil)
	want("attached", 200, "ok")

	// The read loop returned: 503 until the observer serves again.
	h.readerStopped("reader closed")
	want("reader returned", 503, "event reader stopped: reader closed")
	h.start()
	want("serving again", 200, "ok")
	h.stop()
	want("stopped", 503, "not running")
}

var errInjected = errors.New("read connection map: injected failure")

// failingWalk reads the kernel's connection map, and while fail is set
// hands on its first entry only and then fails, as a batch read that
// breaks part-way would.
type failingWalk struct {
	real                connWalker
	fail                atomic.Bool
	failures, delivered atomic.Int64
}

func (w *failingWalk) Each(fn func(sk uint64, s *reader.State)) (int, error) {
	if !w.fail.Load() {
		return w.real.Each(fn)
	}
	n := 0
	_, err := w.real.Each(func(sk uint64, s *reader.State) {
		if n == 0 {
			fn(sk, s)
			n++
		}
	})
	w.delivered.Add(int64(n))
	w.failures.Add(1)
	if err != nil {
		return n, err
	}
	return n, errInjected
}

// newObserver builds an observer (not serving) for one test; the caller
// closes it.
func newObserver(t *testing.T, o Options) *Observer {
	t.Helper()
	privtest.Require(t)
	cfg := config.Default()
	cfg.FlushInterval = 100 * time.Millisecond
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	ob, err := New(cfg, log, o)
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

// TestFailedFlushKeepsObserverRunning: a read of the kernel map that fails
// part-way must stop nothing. Before, Flush returned between BeginFlush and
// EndFlush and left the table locked: the read loop, every scrape and every
// later flush blocked for good. Each step runs under a timeout, so a
// deadlock fails the test instead of hanging it (and the stuck observer is
// left to the process's exit).
func TestFailedFlushKeepsObserverRunning(t *testing.T) {
	ob := newObserver(t, Options{})
	stuck := false
	t.Cleanup(func() {
		if !stuck {
			ob.Close()
		}
	})
	step := func(what string, f func() error) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
		case <-time.After(10 * time.Second):
			stuck = true
			t.Fatalf("%s blocked for 10s after a failed flush: the table's lock is still held", what)
		}
	}
	readDone := make(chan error, 1)
	go func() { readDone <- ob.readLoop() }()
	client, _, _ := loopbackPair(t) // the kernel map has entries to fail part-way through

	walk := &failingWalk{real: ob.conns}
	walk.fail.Store(true)
	ob.conns = walk
	step("the failing flush", func() error {
		if err := ob.Flush(); !errors.Is(err, errInjected) {
			return fmt.Errorf("Flush() = %v, want the walk's error", err)
		}
		return nil
	})
	if walk.delivered.Load() == 0 {
		t.Error("the walk failed before handing on an entry: not part-way")
	}
	walk.fail.Store(false)
	step("the next flush", ob.Flush)
	step("a scrape", func() error {
		mfs, err := ob.Registry.Gather()
		if err != nil {
			return err
		}
		var last, cpu float64
		var flushes uint64
		var wall float64
		for _, mf := range mfs {
			switch mf.GetName() {
			case "ebpf_net_obs_last_flush_timestamp_seconds":
				last = mf.GetMetric()[0].GetGauge().GetValue()
			case "ebpf_net_obs_flush_cpu_seconds_total":
				cpu = mf.GetMetric()[0].GetCounter().GetValue()
			case "ebpf_net_obs_flush_duration_seconds":
				h := mf.GetMetric()[0].GetHistogram()
				flushes, wall = h.GetSampleCount(), h.GetSampleSum()
			}
		}
		if last < float64(time.Now().Add(-time.Minute).Unix()) {
			return fmt.Errorf("last_flush_timestamp_seconds %v after a successful flush", last)
		}
		// Failed flushes cost too; one thread's CPU cannot exceed its wall time.
		if flushes < 2 || cpu <= 0 || cpu > wall+0.001 {
			return fmt.Errorf("flush cost: %d flushes, %.6fs wall, %.6fs CPU; want the failed and the next one, CPU within wall", flushes, wall, cpu)
		}
		return nil
	})
	step("a close record", func() error {
		before := ob.Table.Counters().Closes
		client.Close()
		for ob.Table.Counters().Closes == before {
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	})
	step("the read loop's end", func() error {
		ob.closeEvents() // as Serve stops it, before Close unloads the kernel side
		return <-readDone
	})
	step("Close", ob.Close)
}

func (r *running) waitHealthz(t *testing.T, code int, reason string) {
	t.Helper()
	eventually(t, 5*time.Second, fmt.Sprintf("/healthz %d %q", code, reason), func() (bool, string) {
		resp, err := http.Get(r.url + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == code && strings.Contains(string(body), reason), fmt.Sprintf("%d %q", resp.StatusCode, body)
	})
}

// detachSockOps detaches the observer's sock_ops link by its ID, as another
// process (bpftool link detach) would.
func detachSockOps(t *testing.T, ob *Observer) {
	t.Helper()
	info, err := ob.kern.Programs()["sock_ops"].Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		l := it.Take()
		li, err := l.Info()
		if err == nil && li.Program == id {
			err = l.Detach()
			l.Close()
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		l.Close()
	}
	t.Fatalf("no link runs sock_ops (program %d): %v", id, it.Err())
}

// TestHealthzFollowsTheObserver: the served /healthz, on an injected clock,
// turns 503 with the flush's error once flushes have failed for longer than
// the limit, 200 again once one succeeds (and the gauge says when), and
// 503 naming sock_ops once its link is detached in the kernel.
func TestHealthzFollowsTheObserver(t *testing.T) {
	clk := newFakeClock()
	ob := newObserver(t, Options{Now: clk.Now})
	walk := &failingWalk{real: ob.conns}
	ob.conns = walk
	r := serve(t, ob)
	r.waitHealthy(t)
	eventually(t, 5*time.Second, "a successful flush", func() (bool, string) { return !ob.LastFlush().IsZero(), "" })

	walk.fail.Store(true)
	eventually(t, 5*time.Second, "a failed flush", func() (bool, string) { return walk.failures.Load() > 0, "" })
	clk.Advance(6 * time.Second)
	r.waitHealthz(t, http.StatusServiceUnavailable, "no successful flush for")
	r.waitHealthz(t, http.StatusServiceUnavailable, errInjected.Error())
	walk.fail.Store(false)
	r.waitHealthz(t, http.StatusOK, "ok")
	if v, after := r.value(t, "ebpf_net_obs_last_flush_timestamp_seconds", nil), clk.Now().Add(-time.Second); v < float64(after.Unix()) {
		t.Errorf("last_flush_timestamp_seconds %v, want after %v (the injected clock)", v, after.Unix())
	}

	detachSockOps(t, ob)
	r.waitHealthz(t, http.StatusServiceUnavailable, "program detached: sock_ops")
}
