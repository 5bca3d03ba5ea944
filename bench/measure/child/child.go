// Package child runs bench's children (observers, loadgen): each in its own
// process group, so that a shell command's children get the signal too, its
// output kept (the last 8 KiB) for one-line errors.
package child

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is a running child.
type Process struct {
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	err  error
}

// Start runs bin with args.
func Start(ctx context.Context, bin string, args ...string) (*Process, error) {
	return StartCmd(exec.CommandContext(ctx, bin, args...))
}

// StartCmd runs cmd in a process group of its own; a cancelled context
// sends SIGTERM to the group.
func StartCmd(cmd *exec.Cmd) (*Process, error) {
	p := &Process{cmd: cmd, out: &tailBuffer{max: 8 << 10}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Pid is the child's process id, which is also its group's.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the child has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM to the group, waits up to grace, then SIGKILLs. It
// returns why the exit was not clean (nil for exit status 0).
func (p *Process) Stop(grace time.Duration) error {
	if !p.Exited() {
		_ = syscall.Kill(-p.Pid(), syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("did not exit within %s of SIGTERM; killed", grace)
	}
	return p.ExitErr()
}

// ExitErr says why the child ended, with its last line of output (nil: exit status 0).
func (p *Process) ExitErr() error {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Errorf("terminated by %v (no SIGTERM handler?)", ws.Signal())
		}
		return fmt.Errorf("exit status %d: %s", ee.ExitCode(), LastLine(p.Tail()))
	}
	return p.err
}

// KilledBy reports whether the child died of sig.
func (p *Process) KilledBy(sig syscall.Signal) bool {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		ws, ok := ee.Sys().(syscall.WaitStatus)
		return ok && ws.Signaled() && ws.Signal() == sig
	}
	return false
}

// Tail is the end of the child's output.
func (p *Process) Tail() string { return p.out.String() }

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

// FreeAddr returns a loopback address with a port nobody listens on now.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Sleep waits d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// LastLine is the last non-empty line of s, at most 300 bytes of it.
func LastLine(s string) string {
	b := bytes.TrimSpace([]byte(s))
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	if len(b) > 300 {
		b = b[len(b)-300:]
	}
	return string(b)
}
