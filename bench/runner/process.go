package runner

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// process is a child in its own process group, so that a shell command's
// children get the signal too; its output is kept (last 8 KiB) for errors.
type process struct {
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	err  error
}

func start(ctx context.Context, bin string, args []string) (*process, error) {
	return startCmd(exec.CommandContext(ctx, bin, args...))
}

func startCmd(cmd *exec.Cmd) (*process, error) {
	p := &process{cmd: cmd, out: &tailBuffer{max: 8 << 10}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the group, waits up to grace, then SIGKILLs. It
// returns why the exit was not clean (nil for exit status 0).
func (p *process) stop(grace time.Duration) error {
	if !p.exited() {
		_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("did not exit within %s of SIGTERM; killed", grace)
	}
	return p.exitErr()
}

func (p *process) exitErr() error {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Errorf("terminated by %v (no SIGTERM handler?)", ws.Signal())
		}
		return fmt.Errorf("exit status %d: %s", ee.ExitCode(), lastLine(p.tail()))
	}
	return p.err
}

// killedBy reports whether the process died of sig.
func (p *process) killedBy(sig syscall.Signal) bool {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		ws, ok := ee.Sys().(syscall.WaitStatus)
		return ok && ws.Signaled() && ws.Signal() == sig
	}
	return false
}

func (p *process) tail() string { return p.out.String() }

type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > t.max {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.max:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
