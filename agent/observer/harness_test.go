package observer

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/config"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
)

// running is an observer serving on a loopback port for one test.
type running struct {
	*Observer
	url string
}

func start(t *testing.T, mutate func(*config.Config)) *running {
	t.Helper()
	privtest.Require(t)
	cfg := config.Default()
	cfg.FlushInterval = 100 * time.Millisecond
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// Setup, as the binary does: workload metadata and OTLP when configured.
	ob, err := Setup(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	r := serve(t, ob)
	r.waitHealthy(t)
	return r
}

// serve runs ob on a loopback port until the test ends.
func serve(t *testing.T, ob *Observer) *running {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("observer stop: %v", err)
		}
	})
	return &running{Observer: ob, url: "http://" + ln.Addr().String()}
}

func (r *running) waitHealthy(t *testing.T) {
	t.Helper()
	for i := 0; i < 100; i++ {
		resp, err := http.Get(r.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("observer never became healthy")
}

// series finds metric values by name whose labels include all of want.
func (r *running) series(t *testing.T, name string, want map[string]string) []*dto.Metric {
	t.Helper()
	mfs, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []*dto.Metric
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			out = append(out, m)
		}
	}
	return out
}

// value is the single counter or gauge matching want, or -1 if none.
func (r *running) value(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	ms := r.series(t, name, want)
	if len(ms) == 0 {
		return -1
	}
	if len(ms) > 1 {
		t.Fatalf("%s%v: %d series, want 1", name, want, len(ms))
	}
	if c := ms[0].GetCounter(); c != nil {
		return c.GetValue()
	}
	return ms[0].GetGauge().GetValue()
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not reached within %s: %s", what, d, last)
}

func connLabels(local, remote net.Addr) map[string]string {
	l, rm := local.(*net.TCPAddr), remote.(*net.TCPAddr)
	return map[string]string{
		"src_ip": l.IP.String(), "src_port": strconv.Itoa(l.Port),
		"dst_ip": rm.IP.String(), "dst_port": strconv.Itoa(rm.Port),
	}
}

// exchange moves req bytes client→server and resp bytes back, closing
// gracefully; it returns the sockets' addresses as each side saw them and
// the byte counts each application measured.
type exchangeResult struct {
	clientLocal, clientRemote, serverLocal, serverRemote net.Addr
	clientSent, clientRecv, serverSent, serverRecv       int64
}

// serveEcho echoes back whatever each accepted connection sends, until ln
// closes.
func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 256)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
		}()
	}
}

func exchange(t *testing.T, ln net.Listener, dial func() (net.Conn, error), req, resp int) exchangeResult {
	t.Helper()
	var res exchangeResult
	srvDone := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvDone <- err
			return
		}
		defer c.Close()
		res.serverLocal, res.serverRemote = c.LocalAddr(), c.RemoteAddr()
		res.serverRecv, err = io.Copy(io.Discard, c)
		if err != nil {
			srvDone <- err
			return
		}
		n, err := c.Write(make([]byte, resp))
		res.serverSent = int64(n)
		srvDone <- err
	}()
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	res.clientLocal, res.clientRemote = c.LocalAddr(), c.RemoteAddr()
	n, err := c.Write(make([]byte, req))
	if err != nil {
		t.Fatal(err)
	}
	res.clientSent = int64(n)
	c.(*net.TCPConn).CloseWrite()
	res.clientRecv, err = io.Copy(io.Discard, c)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-srvDone; err != nil {
		t.Fatal(err)
	}
	return res
}
