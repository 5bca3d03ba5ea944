package conntrack_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/conntrack"
	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
)

// TestConcurrentUse is for `go test -race`: the event reader, the flusher
// and scrapes use one table at once, as in the observer.
func TestConcurrentUse(t *testing.T) {
	tb := conntrack.New(conntrack.Options{
		Retention: time.Millisecond, MaxSeries: 50, Resolver: resolver,
		KtimeToWall: func(ns uint64) time.Time { return time.Unix(0, int64(ns)) },
	})
	sp := spec{src: "10.0.0.1:40000", dst: "10.0.0.2:5432", pid: 4242, comm: "psql", cgroup: 77,
		dir: conntrack.DirActive, flags: est}
	proto := sp.state(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var closes, flushes, scrapes atomic.Int64

	wg.Go(func() { // event reader
		var ev bpf.TcpobsConnEvent
		for i := uint64(1); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ev = bpf.TcpobsConnEvent{Sk: i % 64, EndNs: uint64(time.Now().UnixNano()), BytesSent: i, State: proto}
			ev.State.StartNs = uint64(time.Now().UnixNano()) - 1000
			ev.State.Sport = uint16(i)
			tb.Close(&ev)
			closes.Add(1)
		}
	})
	wg.Go(func() { // flusher
		for i := uint64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = tb.Flush(func(observe func(uint64, *conntrack.State)) (int, error) {
				for sk := uint64(0); sk < 64; sk += 2 {
					s := proto
					s.StartNs = uint64(time.Now().UnixNano()) - 500*(i%3)
					s.Sent, s.RttSamples = i, uint32(i)
					observe(sk, &s)
				}
				return 32, nil
			})
			tb.Sweep()
			flushes.Add(1)
		}
	})
	wg.Go(func() { // scrapes
		for {
			select {
			case <-stop:
				return
			default:
			}
			var sum uint64
			tb.Each(func(c *conntrack.Conn) { sum += c.BytesSent + uint64(len(c.Labels())) })
			tb.EachRollup(func(r *conntrack.Rollup) { sum += r.BytesSent + r.RTT.Count + uint64(len(r.Values())) })
			_ = tb.Counters()
			_, _ = tb.Len()
			scrapes.Add(1)
		}
	})
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d closes, %d flushes, %d scrapes", closes.Load(), flushes.Load(), scrapes.Load())
	if closes.Load() == 0 || flushes.Load() == 0 || scrapes.Load() == 0 {
		t.Fatal("a goroutine never ran")
	}
	var active int64
	tb.EachRollup(func(r *conntrack.Rollup) {
		active += r.Active
		if r.Active < 0 || uint64(r.Active) != r.Opened-r.Closed {
			t.Errorf("rollup %v: active %d, opened %d, closed %d", r.Values(), r.Active, r.Opened, r.Closed)
		}
	})
	if open, _ := tb.Len(); int64(open) != active {
		t.Errorf("%d open connections, rollups say %d active", open, active)
	}
}
