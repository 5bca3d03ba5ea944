package fidelity

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/matrix"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/measure/child"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/measure/probe"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
)

// Options say what Measure runs.
type Options struct {
	ObserverBin string // bin/ebpf-net-obs
	LoadgenBin  string // bin/loadgen
	Workload    matrix.Workload
	Rates       []int // sample rates to judge; rate 1, the reference, always runs
	Duration    time.Duration
	Log         io.Writer // progress, one line per step; nil: none
}

const (
	healthTimeout = 60 * time.Second
	flushInterval = 500 * time.Millisecond
	// flushWait is three flush intervals: what the kernel held when the load
	// stopped has been read into the rollups by then.
	flushWait = 3 * flushInterval
)

// Measure runs one loadgen server and, all at once, one observer at
// --sample-rate 1 and one per rate in opts.Rates; drives the workload once
// so that every observer sees the same connections; scrapes each
// observer's RTT histogram (the series of the server's port only); and
// returns one Fidelity per rate other than 1, in the order given. Every
// process it starts is stopped (SIGTERM to its process group, then SIGKILL)
// before it returns, on every path.
func Measure(ctx context.Context, opts Options) ([]results.Fidelity, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	rates := []int{1}
	for _, r := range opts.Rates {
		if r != 1 && !contains(rates, r) {
			rates = append(rates, r)
		}
	}
	logf := func(format string, args ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, "fidelity: "+format+"\n", args...)
		}
	}
	var procs []*child.Process
	defer func() { stopAll(procs) }()

	srvAddr, err := child.FreeAddr()
	if err != nil {
		return nil, fmt.Errorf("fidelity: no free loopback port for the loadgen server: %v (is the loopback interface up?)", err)
	}
	srv, err := child.Start(ctx, opts.LoadgenBin, "server", "--listen", srvAddr)
	if err != nil {
		return nil, fmt.Errorf("fidelity: start loadgen server %s: %v (build it with `make build`)", opts.LoadgenBin, err)
	}
	procs = append(procs, srv)
	if err := waitListening(ctx, srv, srvAddr); err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(srvAddr)

	obs := make([]*observer, len(rates))
	for i, r := range rates {
		addr, err := child.FreeAddr()
		if err != nil {
			return nil, fmt.Errorf("fidelity: no free loopback port for the observer at --sample-rate %d: %v (is the loopback interface up?)", r, err)
		}
		p, err := child.Start(ctx, opts.ObserverBin, "--listen-address", addr, "--sample-rate", strconv.Itoa(r),
			"--bpf-stats", "off", "--flush-interval", flushInterval.String())
		if err != nil {
			return nil, fmt.Errorf("fidelity: start observer %s at --sample-rate %d: %v (build it with `make build`)", opts.ObserverBin, r, err)
		}
		procs = append(procs, p)
		obs[i] = &observer{rate: r, url: "http://" + addr, proc: p}
	}
	logf("started %d observers side by side (sample rates %v); waiting for /healthz", len(obs), rates)
	if err := waitHealthy(ctx, obs); err != nil {
		return nil, err
	}

	w := opts.Workload
	logf("running %s (mode %s, size %d, concurrency %d) for %s against %s", w.Name, w.Mode, w.Size, w.Concurrency, opts.Duration, srvAddr)
	if err := runClient(ctx, opts.LoadgenBin, srvAddr, w, opts.Duration); err != nil {
		return nil, err
	}
	if err := child.Sleep(ctx, flushWait); err != nil {
		return nil, fmt.Errorf("fidelity: %v", err)
	}

	hs := make([]Histogram, len(obs))
	for i, o := range obs {
		if o.proc.Exited() {
			return nil, fmt.Errorf("fidelity: observer at --sample-rate %d exited during the run: %s", o.rate, why(o.proc))
		}
		if hs[i], err = scrape(ctx, o.url+"/metrics", map[string]string{"service_port": port}); err != nil {
			return nil, fmt.Errorf("fidelity: observer at --sample-rate %d: %v", o.rate, err)
		}
	}
	if hs[0].Count() <= 0 {
		return nil, fmt.Errorf("fidelity: the observer at --sample-rate 1 reported no RTT samples for port %s after %s of %s: the sock_ops program saw no ACKs (run as root with cgroup v2 mounted; `make mounts`)", port, opts.Duration, w.Mode)
	}
	name := w.Name
	if name == "" {
		name = w.Mode
	}
	out := make([]results.Fidelity, 0, len(obs)-1)
	for i := 1; i < len(obs); i++ {
		f := Compare(hs[0], hs[i])
		f.Workload, f.SampleRate = name, obs[i].rate
		out = append(out, f)
		logf("rate %d: %.0f of %.0f RTT samples kept, p50 %+.1f%%, p90 %+.1f%%, p99 %+.1f%%, KS %.3f",
			f.SampleRate, f.Samples, f.ReferenceSamples, f.QuantileErrorPct["p50"], f.QuantileErrorPct["p90"], f.QuantileErrorPct["p99"], f.KS)
	}
	// an unclean exit does not spoil the numbers, but is worth a line
	for i, err := range stopAll(procs) {
		if err != nil {
			logf("process %d did not stop cleanly: %v", procs[i].Pid(), err)
		}
	}
	return out, nil
}

// stopAll stops every process at once (each gets SIGTERM, then SIGKILL
// after 5 s) and returns why each exit was not clean.
func stopAll(procs []*child.Process) []error {
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = p.Stop(5 * time.Second) }()
	}
	wg.Wait()
	return errs
}

// why says how a process ended and the last line it wrote.
func why(p *child.Process) string {
	if !p.Exited() {
		return "still running: " + child.LastLine(p.Tail())
	}
	if err := p.ExitErr(); err != nil {
		return err.Error()
	}
	return "exit status 0: " + child.LastLine(p.Tail())
}

func (o Options) check() error {
	var errs []string
	if o.ObserverBin == "" {
		errs = append(errs, "no observer binary (Options.ObserverBin; `make build` makes bin/ebpf-net-obs)")
	}
	if o.LoadgenBin == "" {
		errs = append(errs, "no loadgen binary (Options.LoadgenBin; `make build` makes bin/loadgen)")
	}
	if o.Workload.Mode == "" {
		errs = append(errs, "workload has no mode (stream, rr or crr)")
	}
	if o.Duration <= 0 {
		errs = append(errs, "duration must be positive (e.g. 3s)")
	}
	if len(o.Rates) == 0 {
		errs = append(errs, "no sample rates to judge (e.g. 4, 10, 100)")
	}
	for _, r := range o.Rates {
		if r < 1 {
			errs = append(errs, fmt.Sprintf("sample rate %d is below 1", r))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("fidelity: %s", strings.Join(errs, "; "))
	}
	return nil
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

type observer struct {
	rate int
	url  string
	proc *child.Process
}

// waitHealthy waits until every observer's /healthz answers 200.
func waitHealthy(ctx context.Context, obs []*observer) error {
	deadline := time.Now().Add(healthTimeout)
	ready := make([]bool, len(obs))
	for {
		all := true
		for i, o := range obs {
			if ready[i] {
				continue
			}
			if o.proc.Exited() {
				return fmt.Errorf("fidelity: observer at --sample-rate %d exited before it was ready: %s (run as root; `make mounts` mounts bpffs and tracefs)", o.rate, why(o.proc))
			}
			ready[i] = probe.Healthy(ctx, o.url+"/healthz")
			all = all && ready[i]
		}
		if all {
			return nil
		}
		if time.Now().After(deadline) {
			var late []string
			for i, o := range obs {
				if !ready[i] {
					late = append(late, fmt.Sprintf("--sample-rate %d (%s)", o.rate, child.LastLine(o.proc.Tail())))
				}
			}
			return fmt.Errorf("fidelity: GET /healthz did not answer 200 within %s for observers at %s (a slow BPF load on a busy machine: retry on an idle one)", healthTimeout, strings.Join(late, ", "))
		}
		if err := child.Sleep(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("fidelity: %v", err)
		}
	}
}

func scrape(ctx context.Context, url string, match map[string]string) (Histogram, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Histogram{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Histogram{}, fmt.Errorf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Histogram{}, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	return Parse(resp.Body, RTTMetric, match)
}

func waitListening(ctx context.Context, p *child.Process, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && !p.Exited() {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		if err := child.Sleep(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("fidelity: %v", err)
		}
	}
	return fmt.Errorf("fidelity: loadgen server did not listen on %s: %s (is the port taken? retry)", addr, why(p))
}

// runClient runs the workload once, with no warm-up: every connection it
// makes counts, and every observer sees all of them.
func runClient(ctx context.Context, bin, target string, w matrix.Workload, d time.Duration) error {
	args := []string{"client", "--mode", w.Mode, "--target", target, "--duration", d.String(), "--warmup", "0",
		"--concurrency", strconv.Itoa(max(w.Concurrency, 1)), "--json"}
	if w.Size > 0 {
		args = append(args, "--size", strconv.Itoa(w.Size))
	}
	if w.Rate > 0 {
		args = append(args, "--rate", strconv.Itoa(w.Rate))
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("fidelity: loadgen client %s: %v: %s (run it by hand: %s %s)", w.Mode, err, child.LastLine(stderr.String()), bin, strings.Join(args, " "))
	}
	var res results.Loadgen
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); err != nil {
		return fmt.Errorf("fidelity: loadgen client %s: bad --json output (%v): %.200q (rebuild bin/loadgen)", w.Mode, err, stdout.String())
	}
	if res.Ops <= 0 {
		return fmt.Errorf("fidelity: loadgen client %s: 0 operations in %s (errors=%v): nothing to compare (check the server's address %s)", w.Mode, d, res.Errors, target)
	}
	return nil
}
