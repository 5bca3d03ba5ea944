package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
)

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// server is a running `loadgen server`.
type server struct {
	proc *process
	addr string
}

func startServer(ctx context.Context, bin string) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p, err := start(ctx, bin, []string{"server", "--listen", addr})
	if err != nil {
		return nil, fmt.Errorf("start loadgen server: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return &server{proc: p, addr: addr}, nil
		}
		if p.exited() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.stop(2 * time.Second)
	return nil, fmt.Errorf("loadgen server did not listen on %s: %s", addr, p.tail())
}

func (s *server) stop() error { return s.proc.stop(5 * time.Second) }

// runClient runs one `loadgen client --json` with its own warm-up (no gap
// between warm-up and measurement) and decodes its result. atMeasure, when
// set, is called once the warm-up has elapsed, to open the probe window.
func runClient(ctx context.Context, bin, target string, w matrix.Workload, warmup, d time.Duration, atMeasure func()) (results.Loadgen, error) {
	args := []string{"client", "--mode", w.Mode, "--target", target,
		"--duration", d.String(), "--warmup", warmup.String(), "--concurrency", strconv.Itoa(w.Concurrency),
		"--size", strconv.Itoa(w.Size), "--json"}
	if w.Rate > 0 {
		args = append(args, "--rate", strconv.Itoa(w.Rate))
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// a client that hangs past its duration is a bug, not a slow run
	cmd.WaitDelay = 30 * time.Second
	var res results.Loadgen
	if atMeasure == nil {
		atMeasure = func() {}
	}
	if warmup <= 0 {
		atMeasure()
	}
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("loadgen client %s: %v", w.Mode, err)
	}
	opened := make(chan struct{})
	if warmup > 0 {
		time.AfterFunc(warmup, func() { atMeasure(); close(opened) })
	} else {
		close(opened)
	}
	err := cmd.Wait()
	<-opened
	if err != nil {
		return res, fmt.Errorf("loadgen client %s: %v: %s", w.Mode, err, lastLine(stderr.String()))
	}
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); err != nil {
		return res, fmt.Errorf("loadgen client %s: bad --json output (%v): %.200q", w.Mode, err, stdout.String())
	}
	if res.Ops <= 0 {
		return res, fmt.Errorf("loadgen client %s: 0 operations in %s (errors=%v)", w.Mode, d, res.Errors)
	}
	return res, nil
}

func lastLine(s string) string {
	b := bytes.TrimSpace([]byte(s))
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	if len(b) > 300 {
		b = b[len(b)-300:]
	}
	return string(b)
}
