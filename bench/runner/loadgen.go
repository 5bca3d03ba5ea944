package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/measure/child"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/measure/probe"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
)

// server is a running `loadgen server`.
type server struct {
	proc *child.Process
	addr string
}

// inCgroup starts cmd inside cg (nil: where bench runs), so the load's CPU
// time is read from the cgroup's own counter.
func inCgroup(cmd *exec.Cmd, cg *probe.Cgroup) *exec.Cmd {
	if cg == nil {
		return cmd
	}
	return cg.Into(cmd)
}

// pin keeps process pid on one CPU: the first for the server, the last for
// the client, when the workload asks for it.
func pin(pid int, w matrix.Workload, client bool) error {
	if !w.Pin {
		return nil
	}
	var set unix.CPUSet
	cpu := 0
	if client {
		cpu = runtime.NumCPU() - 1
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(pid, &set); err != nil {
		return fmt.Errorf("pin loadgen to CPU %d: %w", cpu, err)
	}
	return nil
}

func startServer(ctx context.Context, bin string, w matrix.Workload, cg *probe.Cgroup) (*server, error) {
	addr, err := child.FreeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "server", "--listen", addr)
	p, err := child.StartCmd(inCgroup(cmd, cg))
	if err != nil {
		return nil, fmt.Errorf("start loadgen server: %w", err)
	}
	if err := pin(p.Pid(), w, false); err != nil {
		p.Stop(2 * time.Second)
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return &server{proc: p, addr: addr}, nil
		}
		if p.Exited() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.Stop(2 * time.Second)
	return nil, fmt.Errorf("loadgen server did not listen on %s: %s", addr, p.Tail())
}

func (s *server) stop() error { return s.proc.Stop(5 * time.Second) }

// runClient runs one `loadgen client --json` with its own warm-up (no gap
// between warm-up and measurement) and decodes its result. atMeasure, when
// set, is called once the warm-up has elapsed, to open the probe window.
func runClient(ctx context.Context, bin, target string, w matrix.Workload, cg *probe.Cgroup, warmup, d time.Duration, atMeasure func()) (results.Loadgen, error) {
	args := []string{"client", "--mode", w.Mode, "--target", target,
		"--duration", d.String(), "--warmup", warmup.String(), "--concurrency", strconv.Itoa(w.Concurrency),
		"--size", strconv.Itoa(w.Size), "--json"}
	if w.Rate > 0 {
		args = append(args, "--rate", strconv.Itoa(w.Rate))
	}
	var stdout, stderr bytes.Buffer
	cmd := inCgroup(exec.CommandContext(ctx, bin, args...), cg)
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
	if err := pin(cmd.Process.Pid, w, true); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return res, err
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
		return res, fmt.Errorf("loadgen client %s: %v: %s", w.Mode, err, child.LastLine(stderr.String()))
	}
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); err != nil {
		return res, fmt.Errorf("loadgen client %s: bad --json output (%v): %.200q", w.Mode, err, stdout.String())
	}
	if res.Ops <= 0 {
		return res, fmt.Errorf("loadgen client %s: 0 operations in %s (errors=%v)", w.Mode, d, res.Errors)
	}
	return res, nil
}
