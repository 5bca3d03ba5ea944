package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/loadgen"
)

// holdResult is what `loadgen hold --json` prints: one line when every
// connection is open ("ready"), one when they are released ("done").
type holdResult struct {
	State     string  `json:"state"` // ready | done
	Conns     int     `json:"conns"`
	Sockets   int     `json:"sockets"` // both ends of each connection
	Processes int     `json:"processes"`
	OpenSec   float64 `json:"open_s"`
	loadgen.HoldStats
	// CPUPerConnNs is the holders' CPU per held connection per second of
	// holding: what holding costs the machine besides the observer.
	CPUPerConnNs float64 `json:"cpu_per_conn_ns_per_s,omitempty"`
}

func hold(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	conns := fs.Int("conns", 0, "connections to hold (each is two sockets)")
	perProcess := fs.Int("per-process", 9000, "connections per holding process (each holds 2 files per connection)")
	listen := fs.String("listen", "127.0.0.1", "loopback IP the holders listen on (127.0.0.1 or ::1)")
	var trickle, duration time.Duration
	fs.Var(durationValue{&trickle}, "trickle", "each connection sends one byte per interval (0: idle)")
	fs.Var(durationValue{&duration}, "duration", "hold this long (0: until SIGINT/SIGTERM)")
	asJSON := fs.Bool("json", false, "print JSON lines: one when ready, one when done")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *conns < 1 {
		return usageError{"hold: --conns N (at least 1) is required"}
	}
	if *perProcess < 1 {
		return usageError{"hold: --per-process must be at least 1"}
	}
	lip, err := netip.ParseAddr(*listen)
	if err != nil || !lip.IsLoopback() {
		return usageError{fmt.Sprintf("hold: --listen %q: want a loopback IP such as 127.0.0.1 or ::1", *listen)}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	nproc := (*conns + *perProcess - 1) / *perProcess
	res := holdResult{State: "ready", Conns: *conns, Sockets: 2 * *conns, Processes: nproc}
	start := time.Now()
	workers := make([]*holdWorker, 0, nproc)
	defer func() {
		for _, w := range workers {
			w.kill()
		}
	}()
	for i := range nproc {
		n := min(*perProcess, *conns-i**perProcess)
		w, err := startHoldWorker(exe, n, lip, sourceFor(lip, i), trickle)
		if err != nil {
			return err
		}
		workers = append(workers, w)
	}
	for _, w := range workers {
		if err := w.ready(); err != nil {
			return err
		}
	}
	res.OpenSec = time.Since(start).Seconds()
	report := func() error {
		if *asJSON {
			return json.NewEncoder(stdout).Encode(res)
		}
		fmt.Fprintf(os.Stderr, "loadgen: %s: %d connections (%d sockets) in %d processes, opened in %.1fs\n",
			res.State, res.Conns, res.Sockets, res.Processes, res.OpenSec)
		return nil
	}
	if err := report(); err != nil {
		return err
	}
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	<-ctx.Done()
	res.State = "done"
	for _, w := range workers {
		st, err := w.stop()
		if err != nil {
			return err
		}
		res.HoldStats.Add(st)
	}
	workers = nil
	if res.HeldSec > 0 {
		res.CPUPerConnNs = res.CPUSec * 1e9 / float64(res.Conns) / res.HeldSec
	}
	if !*asJSON {
		fmt.Fprintf(os.Stderr, "loadgen: held %.1fs; trickled %d bytes, %d received; holders' CPU %.2fs (%.0f ns per connection per second)\n",
			res.HeldSec, res.BytesSent, res.BytesReceived, res.CPUSec, res.CPUPerConnNs)
	}
	if res.BytesReceived != res.BytesSent {
		return fmt.Errorf("hold: %d bytes trickled but %d received", res.BytesSent, res.BytesReceived)
	}
	return report()
}

// sourceFor gives holder i its own loopback source address (127.0.1.i+1,
// ...) so the ports of its connections never compete with another's or with
// a load running beside them; IPv6 has ::1 only.
func sourceFor(lip netip.Addr, i int) netip.Addr {
	if !lip.Is4() {
		return lip
	}
	return netip.AddrFrom4([4]byte{127, 0, byte(1 + (i+1)/256), byte((i + 1) % 256)})
}

// holdWorker is one holding process: `loadgen hold-worker`.
type holdWorker struct {
	cmd *exec.Cmd
	out *bufio.Scanner
}

func startHoldWorker(exe string, n int, lip, src netip.Addr, trickle time.Duration) (*holdWorker, error) {
	cmd := exec.Command(exe, "hold-worker", "--conns", strconv.Itoa(n), "--listen", lip.String(),
		"--source", src.String(), "--trickle", trickle.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("hold: start a holding process: %w", err)
	}
	return &holdWorker{cmd: cmd, out: bufio.NewScanner(out)}, nil
}

func (w *holdWorker) ready() error {
	if !w.out.Scan() || w.out.Text() != "ready" {
		return fmt.Errorf("hold: a holding process failed to open its connections (%v)", w.cmd.Wait())
	}
	return nil
}

func (w *holdWorker) stop() (loadgen.HoldStats, error) {
	var st loadgen.HoldStats
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	var decodeErr error
	if w.out.Scan() {
		decodeErr = json.Unmarshal(w.out.Bytes(), &st)
	} else {
		decodeErr = errors.New("no stats")
	}
	if err := w.cmd.Wait(); err != nil {
		return st, fmt.Errorf("hold: a holding process: %w", err)
	}
	if decodeErr != nil {
		return st, fmt.Errorf("hold: a holding process's stats: %w", decodeErr)
	}
	return st, nil
}

func (w *holdWorker) kill() {
	_ = w.cmd.Process.Kill()
	_ = w.cmd.Wait()
}

// holdWorker runs inside a holding process: it opens its share, says
// "ready", holds until SIGTERM and prints its stats as one JSON line.
func holdWorkerMain(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("hold-worker", flag.ContinueOnError)
	var cfg loadgen.HoldConfig
	fs.IntVar(&cfg.Conns, "conns", 0, "")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1", "")
	fs.StringVar(&cfg.Source, "source", "", "")
	fs.Var(durationValue{&cfg.Trickle}, "trickle", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	h, err := loadgen.OpenHold(cfg)
	if err != nil {
		return err
	}
	defer h.Close()
	if _, err := io.WriteString(stdout, "ready\n"); err != nil {
		return err
	}
	st, err := h.Run(ctx)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(st)
}
