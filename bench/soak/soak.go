// Package soak runs one observer for a long time under steady connection
// churn with long-lived connections held beside it, samples what could
// leak (memory, map entries, series, goroutines, fds), tests each for a
// trend, and checks at the end that the observer's byte counters equal
// the load's own: `bench soak`, `make soak` (docs/bench.md).
package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/measure/child"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/measure/probe"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/runner"
	"github.com/ebpf-net-obs/ebpf-net-obs/loadgen"
)

// Config is one soak.
type Config struct {
	Duration    time.Duration
	Rate        int // churn, connections per second
	Hold        int // long-lived connections
	Sample      time.Duration
	Out         string
	ObserverBin string
	LoadgenBin  string
	Command     []string
	Log         io.Writer // progress lines
}

const (
	// chunk is one loadgen client run: progress is printed between them.
	chunk = time.Minute
	// concurrency of the churning client: enough for the rate, few
	// enough to leave the 2 CPUs of a CI machine to the observer.
	concurrency = 4
	// maxConnections sizes the observer's map well above hold + churn in
	// flight, so a full map is a leak and not a small setting.
	maxConnections = 262144
	// settle is two of the observer's flushes (1 s by default): every
	// closed connection is in its counters before the last scrape.
	settle = 3 * time.Second
	// crrHeaderBytes is loadgen's request header (docs/loadgen.md): the
	// server's "bytes in" counts payload only, the kernel counts both.
	crrHeaderBytes = 8
)

// File is soak.json.
type File struct {
	Meta      Meta     `json:"meta"`
	Samples   []Sample `json:"samples"`
	Growth    []Growth `json:"growth"`
	Exactness []Exact  `json:"exactness"`
	Load      Load     `json:"load"`
	Errors    []string `json:"errors,omitempty"`
	Pass      bool     `json:"pass"`
	Verdict   string   `json:"verdict"`
}

// Meta says what was run, where and when.
type Meta struct {
	Duration    string    `json:"duration"`
	Ran         string    `json:"ran"` // shorter than duration when interrupted
	Rate        int       `json:"rate"`
	Hold        int       `json:"hold"`
	Sample      string    `json:"sample"`
	Kernel      string    `json:"kernel"`
	Commit      string    `json:"commit"`
	Start       time.Time `json:"start"`
	Command     []string  `json:"command"`
	Observer    []string  `json:"observer"` // its command line
	Interrupted bool      `json:"interrupted,omitempty"`
}

// Sample is one look at the observer; T is seconds since the churn began.
type Sample struct {
	T          float64 `json:"t_s"`
	RSSBytes   float64 `json:"rss_bytes"` // VmRSS
	FDs        float64 `json:"fds"`
	Goroutines float64 `json:"goroutines"`
	MapEntries float64 `json:"map_entries"`
	Series     float64 `json:"connection_series"`
	ProcessRSS float64 `json:"process_resident_memory_bytes"` // the observer's own figure
	EventsLost float64 `json:"events_lost"`
	FlushCPU   float64 `json:"flush_cpu_s"`
	Flushes    float64 `json:"flushes"`
}

// Growth is one series' trend.
type Growth struct {
	Key  string `json:"key"`
	Name string `json:"name"`
	Unit string `json:"unit"`
	Trend
}

// Exact compares one of the observer's byte counters with the load's own.
type Exact struct {
	Counter  string  `json:"counter"`
	Observer float64 `json:"observer"`
	Load     float64 `json:"load"`
	Drift    float64 `json:"drift"` // observer − load
	From     string  `json:"from"`  // how the load's figure is made
}

// Load is what the load generators did.
type Load struct {
	Chunks     int                `json:"chunks"`
	Ops        uint64             `json:"ops"`
	Bytes      uint64             `json:"bytes"`
	Errors     uint64             `json:"errors"`
	FirstError string             `json:"first_error,omitempty"`
	Server     *ServerStats       `json:"server,omitempty"`
	Hold       *loadgen.HoldStats `json:"hold,omitempty"`
}

// ServerStats is `loadgen server`'s stop line.
type ServerStats struct {
	Connections uint64 `json:"connections"`
	BadHeaders  uint64 `json:"bad_headers"`
	BytesIn     uint64 `json:"bytes_in"`
	BytesOut    uint64 `json:"bytes_out"`
	Responses   uint64 `json:"responses"`
}

// series are the figures tested for growth, in report and plot order.
var series = []struct {
	key, name, unit string
	scale           float64
	get             func(Sample) float64
}{
	{"rss", "RSS (VmRSS)", "MiB", 1 << 20, func(s Sample) float64 { return s.RSSBytes }},
	{"entries", `map entries (conns)`, "entries", 1, func(s Sample) float64 { return s.MapEntries }},
	{"series", "per-connection series", "series", 1, func(s Sample) float64 { return s.Series }},
	{"goroutines", "goroutines", "goroutines", 1, func(s Sample) float64 { return s.Goroutines }},
	{"fds", "open file descriptors", "fds", 1, func(s Sample) float64 { return s.FDs }},
}

// Run soaks, fills in the verdict and returns what was collected, also
// when it stops early (an error or ctx cancelled by SIGINT).
func Run(ctx context.Context, cfg Config) (*File, error) {
	f := &File{Meta: Meta{Duration: cfg.Duration.String(), Rate: cfg.Rate, Hold: cfg.Hold,
		Sample: cfg.Sample.String(), Kernel: runner.Kernel(), Commit: runner.Commit(),
		Start: time.Now().UTC(), Command: cfg.Command}}
	r, err := start(ctx, cfg, &f.Meta)
	if err != nil {
		return f, err
	}
	defer r.kill()
	smp := startSampler(r, cfg.Sample)
	runErr := r.churn(ctx, cfg, f, smp)
	f.Samples = smp.stop()
	f.Meta.Interrupted = ctx.Err() != nil
	if err := r.finish(f); err != nil {
		f.Errors = append(f.Errors, err.Error())
	}
	judge(f)
	return f, runErr
}

// rig is the observer and the load, running.
type rig struct {
	obs, srv, hold *child.Process
	metrics        string // the observer's /metrics URL
	target         string // the loadgen server's address
	port           string
}

// start brings up the observer, then (so it sees their connections open)
// the loadgen server and the held connections.
func start(ctx context.Context, cfg Config, m *Meta) (*rig, error) {
	obsAddr, err := child.FreeAddr()
	if err != nil {
		return nil, err
	}
	r := &rig{metrics: "http://" + obsAddr + "/metrics"}
	m.Observer = []string{cfg.ObserverBin, "--listen-address", obsAddr, "--max-connections", strconv.Itoa(maxConnections)}
	// Background: on SIGINT the observer must outlive the load for the last scrape.
	if r.obs, err = child.Start(context.Background(), m.Observer[0], m.Observer[1:]...); err != nil {
		return nil, fmt.Errorf("start observer %s: %v (build it: make build)", cfg.ObserverBin, err)
	}
	healthz := "http://" + obsAddr + "/healthz"
	if err := waitFor(ctx, r.obs, 30*time.Second, "observer /healthz answering 200 (run as root; make mounts mounts bpffs and tracefs)",
		func() bool { return probe.Healthy(ctx, healthz) }); err != nil {
		r.kill()
		return nil, err
	}
	if err := r.startLoad(ctx, cfg); err != nil {
		r.kill()
		return nil, err
	}
	return r, nil
}

func (r *rig) startLoad(ctx context.Context, cfg Config) error {
	var err error
	if r.target, err = child.FreeAddr(); err != nil {
		return err
	}
	_, r.port, _ = net.SplitHostPort(r.target)
	if r.srv, err = child.Start(context.Background(), cfg.LoadgenBin, "server", "--listen", r.target); err != nil {
		return fmt.Errorf("start loadgen server %s: %v (build it: make build)", cfg.LoadgenBin, err)
	}
	if err := waitFor(ctx, r.srv, 10*time.Second, "loadgen server listening on "+r.target, func() bool {
		c, err := net.DialTimeout("tcp", r.target, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}); err != nil {
		return err
	}
	if r.hold, err = child.Start(context.Background(), cfg.LoadgenBin, "hold", "--conns", strconv.Itoa(cfg.Hold), "--trickle", "10s", "--json"); err != nil {
		return fmt.Errorf("start loadgen hold: %v", err)
	}
	// opening takes about 20 µs a connection: a minute covers 100k on a slow machine
	return waitFor(ctx, r.hold, time.Minute, fmt.Sprintf("loadgen hold --conns %d ready (lower --hold or raise ulimit -n)", cfg.Hold),
		func() bool { return strings.Contains(r.hold.Tail(), `"state":"ready"`) })
}

// waitFor polls ok until it holds, p exits, ctx ends or timeout passes.
func waitFor(ctx context.Context, p *child.Process, timeout time.Duration, what string, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if p.Exited() {
			return fmt.Errorf("soak: waiting for %s: it exited: %s", what, child.LastLine(p.Tail()))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("soak: no %s within %s: %s", what, timeout, child.LastLine(p.Tail()))
		}
		if err := child.Sleep(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("soak: waiting for %s: %v", what, err)
		}
	}
	return nil
}

// kill stops whatever still runs, without reading its output.
func (r *rig) kill() {
	for _, p := range []*child.Process{r.hold, r.srv, r.obs} {
		if p != nil && !p.Exited() {
			p.Stop(10 * time.Second)
		}
	}
}

// churn runs the client in chunks until cfg.Duration is spent.
func (r *rig) churn(ctx context.Context, cfg Config, f *File, smp *sampler) error {
	begun := time.Now()
	defer func() { f.Meta.Ran = time.Since(begun).Round(time.Second).String() }()
	for done := time.Duration(0); done < cfg.Duration && ctx.Err() == nil; done = time.Since(begun) {
		res, err := r.client(ctx, cfg, min(chunk, cfg.Duration-done))
		f.Load.Chunks++
		f.Load.Ops += res.Ops
		f.Load.Bytes += res.Bytes
		f.Load.Errors += res.Errors
		if f.Load.FirstError == "" {
			f.Load.FirstError = res.FirstError
		}
		if err != nil && ctx.Err() == nil {
			return err
		}
		if r.obs.Exited() {
			return fmt.Errorf("soak: the observer exited after %s: %s (see its log line; rerun with a shorter SOAK to reproduce)", time.Since(begun).Round(time.Second), child.LastLine(r.obs.Tail()))
		}
		fmt.Fprintf(cfg.Log, "soak: %s of %s, %s\n", minSec(time.Since(begun)), minSec(cfg.Duration), smp.latest())
	}
	return ctx.Err()
}

// client runs one `loadgen client` of d; SIGINT makes it print what it did.
func (r *rig) client(ctx context.Context, cfg Config, d time.Duration) (loadgen.Result, error) {
	var res loadgen.Result
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, cfg.LoadgenBin, "client", "--mode", "crr", "--target", r.target,
		"--duration", d.String(), "--concurrency", strconv.Itoa(concurrency), "--rate", strconv.Itoa(cfg.Rate),
		"--warmup", "0", "--json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 30 * time.Second // a client hanging past its duration is a bug
	runErr := cmd.Run()
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); err != nil {
		return res, fmt.Errorf("soak: loadgen client: %v: %s (run it by hand: %s)", runErr, child.LastLine(stderr.String()), strings.Join(cmd.Args, " "))
	}
	return res, nil
}

// finish lets the observer flush, scrapes it a last time, stops the load
// and compares byte totals.
func (r *rig) finish(f *File) error {
	time.Sleep(settle)
	body, scrapeErr := fetch(r.metrics)
	srv, srvErr := r.stopServer()
	f.Load.Server = srv
	f.Load.Hold, _ = r.stopHold()
	if err := r.obs.Stop(10 * time.Second); err != nil {
		f.Errors = append(f.Errors, "observer: "+err.Error())
	}
	if scrapeErr != nil {
		return fmt.Errorf("soak: last scrape of %s: %v: no exactness check", r.metrics, scrapeErr)
	}
	if srvErr != nil {
		return srvErr
	}
	f.Exactness = exactness(body, r.port, *srv)
	return nil
}

func (r *rig) stopServer() (*ServerStats, error) {
	r.srv.Stop(10 * time.Second)
	var s ServerStats
	for _, l := range strings.Split(r.srv.Tail(), "\n") {
		if _, err := fmt.Sscanf(l, "loadgen: stopped: %d connections, %d bad headers, %d bytes in, %d bytes out, %d responses",
			&s.Connections, &s.BadHeaders, &s.BytesIn, &s.BytesOut, &s.Responses); err == nil {
			return &s, nil
		}
	}
	return nil, fmt.Errorf("soak: loadgen server printed no stop line (%q): rebuild bin/loadgen", child.LastLine(r.srv.Tail()))
}

func (r *rig) stopHold() (*loadgen.HoldStats, error) {
	if err := r.hold.Stop(30 * time.Second); err != nil {
		return nil, fmt.Errorf("soak: loadgen hold: %v", err)
	}
	var last loadgen.HoldStats
	for _, l := range strings.Split(r.hold.Tail(), "\n") {
		if strings.Contains(l, `"state":"done"`) {
			if err := json.Unmarshal([]byte(l), &last); err != nil {
				return nil, fmt.Errorf("soak: loadgen hold: bad done line %q: %v", l, err)
			}
			return &last, nil
		}
	}
	return nil, fmt.Errorf("soak: loadgen hold printed no done line")
}

// exactness compares the observer's server-side (passive) rollups on the
// loadgen server's port with the server's own totals.
func exactness(body []byte, port string, s ServerStats) []Exact {
	in := rollup(body, "ebpf_net_obs_bytes_received_total", port)
	out := rollup(body, "ebpf_net_obs_bytes_sent_total", port)
	wantIn := float64(s.BytesIn + crrHeaderBytes*s.Responses)
	return []Exact{
		{Counter: "bytes_received_total", Observer: in, Load: wantIn, Drift: in - wantIn,
			From: fmt.Sprintf("server bytes in + %d-byte header × responses", crrHeaderBytes)},
		{Counter: "bytes_sent_total", Observer: out, Load: float64(s.BytesOut), Drift: out - float64(s.BytesOut),
			From: "server bytes out"},
	}
}

// rollup sums name over its series labelled direction="passive" and
// service_port=port; probe.Metrics keys by one label only, so the lines
// are picked here and parsed there.
func rollup(body []byte, name, port string) float64 {
	var pick bytes.Buffer
	for _, l := range bytes.Split(body, []byte("\n")) {
		if bytes.HasPrefix(l, []byte(name+"{")) && bytes.Contains(l, []byte(`direction="passive"`)) &&
			bytes.Contains(l, []byte(`service_port="`+port+`"`)) {
			pick.Write(append(l, '\n'))
		}
	}
	m, err := probe.ParseMetrics(&pick)
	if err != nil {
		return 0
	}
	return m.Sum(name)
}

// scrapeClient bounds a scrape: a body of 10000 series takes well under a second.
var scrapeClient = &http.Client{Timeout: 10 * time.Second}

// fetch is GET url's body; probe.Scrape parses it away, and the series
// count and the two-label rollups need the lines.
func fetch(url string) ([]byte, error) {
	resp, err := scrapeClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// judge sets the trends, the verdict and Pass.
func judge(f *File) {
	t := make([]float64, len(f.Samples))
	for i, s := range f.Samples {
		t[i] = s.T
	}
	var fails []string
	f.Growth = nil
	for _, s := range series {
		y := make([]float64, len(f.Samples))
		for i, smp := range f.Samples {
			y[i] = s.get(smp) / s.scale
		}
		g := Growth{Key: s.key, Name: s.name, Unit: s.unit, Trend: Fit(t, y)}
		f.Growth = append(f.Growth, g)
		if g.Grows {
			fails = append(fails, fmt.Sprintf("%s grows %+.3g %s/h [%.3g, %.3g]", s.name, g.SlopePerHour, s.unit, g.Low, g.High))
		}
	}
	for _, e := range f.Exactness {
		if e.Drift != 0 {
			fails = append(fails, fmt.Sprintf("%s drifts %+.0f bytes", e.Counter, e.Drift))
		}
	}
	if len(f.Exactness) == 0 {
		fails = append(fails, "no exactness check")
	}
	f.Pass = len(fails) == 0 && !f.Meta.Interrupted
	switch {
	case f.Pass:
		f.Verdict = fmt.Sprintf("PASS: no growth in %d series, bytes exact, over %s", len(series), f.Meta.Ran)
	case len(fails) == 0:
		f.Verdict = "FAIL: interrupted after " + f.Meta.Ran
	default:
		f.Verdict = "FAIL: " + strings.Join(fails, "; ")
	}
}

// Save writes soak.json, report.md and the plots into dir.
func Save(f *File, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("soak: %v (choose another --out)", err)
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(dir+"/soak.json", append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("soak: %v (choose another --out)", err)
	}
	figs, err := Plot(f, dir)
	if err != nil {
		return err
	}
	return os.WriteFile(dir+"/report.md", []byte(Report(f, figs)), 0o644)
}

func minSec(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}
