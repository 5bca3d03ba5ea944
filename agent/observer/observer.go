// Package observer wires the agent in one place: loader → reader → conntrack
// → exporters, each a small stage with one direction of travel.
package observer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/sys/unix"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/config"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/conntrack"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/export/prom"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/loader"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/procscan"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/reader"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/runstats"
	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/mounts"
)

// Version is set at build time with -ldflags "-X ...observer.Version=...".
var Version = "dev"

// drainInterval bounds how long a close record may wait in the transport
// when too few arrive to trigger a wake-up: at most half the flush interval,
// so a record lands before the second flush that misses its socket (which
// would otherwise retire it as lost). No shorter: every wake-up costs a
// context switch and a few more of the Go runtime's sysmon, at rest too
// (TestRestingObserverSleeps; make bench reports the CPU at rest).
func drainInterval(flush time.Duration) time.Duration { return min(500*time.Millisecond, flush/2) }

// statNames index the kernel's per-CPU counters (enum stat_idx in tcpobs.h).
var statNames = [bpf.TcpobsStatIdxSTAT_MAX]string{
	"open_active", "open_passive", "close", "connect_failed", "reset_rx", "reset_tx",
	"retransmit", "rtt_sample", "rtt_sampled_out", "map_full", "transport_full", "untracked_close",
}

// Observer is a running agent.
type Observer struct {
	cfg      config.Config
	log      *slog.Logger
	kern     *loader.Observer
	runStats *runstats.Reader
	events   reader.Reader
	conns    connWalker
	Table    *conntrack.Table
	Registry *prometheus.Registry
	entries  atomic.Int64
	health   *health     // what /healthz reports
	failing  atomic.Bool // the last flush failed (logged once per run of failures)
	mapType  ebpf.MapType
	extra    []func() error // closers of optional parts (OTLP, metadata)
	closeEv  sync.Once
	// What flushes cost: wall time, and CPU time of the flushing thread
	// (the kernel's refresh and map reads run in its system calls).
	flushSeconds    prometheus.Histogram
	flushCPUSeconds prometheus.Counter
	// kernMu keeps Close from unloading programs under a scrape that a slow
	// client kept running past the server's shutdown timeout.
	kernMu sync.RWMutex
}

// connWalker reads the kernel's open connections: reader.ConnMap, or a
// test's stand-in.
type connWalker interface {
	Each(fn func(sk uint64, s *reader.State)) (int, error)
}

// guarded collects from the kernel only while it is still loaded.
type guarded struct {
	ob *Observer
	prometheus.Collector
}

func (g guarded) Collect(ch chan<- prometheus.Metric) {
	g.ob.kernMu.RLock()
	defer g.ob.kernMu.RUnlock()
	if g.ob.kern != nil {
		g.Collector.Collect(ch)
	}
}

func (ob *Observer) closeEvents() {
	ob.closeEv.Do(func() {
		if ob.events != nil {
			_ = ob.events.Close()
		}
	})
}

// MapTypes maps --map-type names to kernel map types.
var MapTypes = map[string]ebpf.MapType{
	"hash": ebpf.Hash, "lru_hash": ebpf.LRUHash,
	"percpu_hash": ebpf.PerCPUHash, "lru_percpu_hash": ebpf.LRUCPUHash,
}

// Options carry what the wiring cannot build itself.
type Options struct {
	Resolver conntrack.Resolver // workload context; nil for none
	Now      func() time.Time
}

// New loads the kernel side and builds every stage; nothing runs until Run.
func New(cfg config.Config, log *slog.Logger, o Options) (*Observer, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	ob := &Observer{cfg: cfg, log: log, mapType: MapTypes[cfg.MapType]}
	ob.health = newHealth(o.Now, healthLimit(cfg.FlushInterval), ob.attached)
	kern, err := loader.Load(loader.Options{
		Ringbuf: cfg.Transport == "ringbuf", RingbufBytes: cfg.RingbufBytes,
		ConnMapType: ob.mapType, MaxConnections: cfg.MaxConnections,
		SampleRate: cfg.SampleRate, CgroupPath: cfg.CgroupPath, Log: log,
	})
	if err != nil {
		return nil, err
	}
	ob.kern = kern
	ob.runStats, err = runstats.New(kern.Programs(), runstats.Options{
		Mode: cfg.BPFStats, Window: cfg.BPFStatsWindow, Period: cfg.BPFStatsPeriod})
	if err != nil {
		kern.Disabled["bpf_stats"] = err.Error()
		log.Warn("BPF run times not measured: ebpf_net_obs_bpf_program_run_seconds_total moves only if something else switches the statistics on", "err", err)
	}
	ob.seedListeners()
	// Loading parsed the kernel's BTF (tens of MiB of garbage now): collect
	// it before the observer reports healthy, not while it observes.
	runtime.GC()
	debug.FreeOSMemory()
	if cfg.Transport == "ringbuf" {
		ob.events, err = reader.NewRingbuf(kern.Objs.EventsRb)
	} else {
		ob.events, err = reader.NewPerf(kern.Objs.EventsPerf, cfg.PerfBufferBytes)
	}
	if err == nil {
		ob.conns, err = reader.NewConnMap(kern.Objs.Conns, kern.PercpuConns())
	}
	if err != nil {
		ob.Close()
		return nil, err
	}
	ob.Table = conntrack.New(conntrack.Options{
		Retention: cfg.CloseRetention, MaxSeries: cfg.MaxConnectionSeries,
		Resolver: o.Resolver, Now: o.Now, KtimeToWall: ktimeToWall(),
	})
	ob.flushSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "ebpf_net_obs_flush_duration_seconds", Help: "Wall time of each flush of the kernel's connection map (refresh, read, apply).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	ob.flushCPUSeconds = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ebpf_net_obs_flush_cpu_seconds_total", Help: "CPU time of the flushes (user and system, the kernel's refresh and map reads included).",
	})
	ob.Registry = prometheus.NewRegistry()
	ob.Registry.MustRegister(ob.flushSeconds, ob.flushCPUSeconds,
		prom.NewConnCollector(ob.Table),
		prom.NewRollupCollector(ob.Table),
		guarded{ob, prom.NewSelfCollector(ob, map[string]string{
			"version": Version, "transport": cfg.Transport, "map_type": cfg.MapType,
			"sample_rate": strconv.FormatUint(uint64(cfg.SampleRate), 10), "kernel": kernelRelease(),
		})},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return ob, nil
}

// seedListeners tells the kernel who owns the sockets that were listening
// before it attached; it learns later listeners itself at listen(). The
// kernel's own entries win (UpdateNoExist).
func (ob *Observer) seedListeners() {
	cg, _ := mounts.Cgroup2()
	ls, err := procscan.Listeners("/proc", cg)
	if err != nil {
		ob.log.Warn("listener owners not seeded: accepted connections of existing listeners will lack a pid", "err", err)
		return
	}
	for _, l := range ls {
		key := bpf.TcpobsListenerKey{Netns: l.Netns, Port: l.Port, Family: l.Family}
		owner := bpf.TcpobsOwner{Pid: l.PID, CgroupId: l.CgroupID}
		for i := 0; i < len(owner.Comm)-1 && i < len(l.Comm); i++ {
			owner.Comm[i] = int8(l.Comm[i])
		}
		_ = ob.kern.Objs.Listeners.Update(&key, &owner, ebpf.UpdateNoExist)
	}
	ob.log.Debug("seeded listener owners", "count", len(ls))
}

// ktimeToWall converts bpf_ktime_get_ns (CLOCK_MONOTONIC) to wall time.
func ktimeToWall() func(uint64) time.Time {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	boot := time.Now().Add(-time.Duration(ts.Nano()))
	return func(ns uint64) time.Time { return boot.Add(time.Duration(ns)) }
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// AddCloser registers an optional part to stop with the observer.
func (ob *Observer) AddCloser(f func() error) { ob.extra = append(ob.extra, f) }

// Run serves on --listen-address until ctx ends, then stops everything and
// detaches.
func (ob *Observer) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", ob.cfg.ListenAddress)
	if err != nil {
		ob.Close()
		return fmt.Errorf("listen on %s: %w (choose another --listen-address)", ob.cfg.ListenAddress, err)
	}
	return ob.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened.
func (ob *Observer) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: ob.Handler(), ReadHeaderTimeout: 10 * time.Second}

	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(4)
	ob.health.start()
	go func() {
		defer wg.Done()
		err := ob.readLoop()
		why := "closed"
		if err != nil {
			why = err.Error()
		}
		ob.health.readerStopped(why)
		errc <- err
	}()
	go func() { defer wg.Done(); ob.flushLoop(ctx) }()
	go func() {
		defer wg.Done()
		if err := ob.runStats.Run(ctx); err != nil {
			// Not fatal: the connections are still observed.
			ob.log.Warn("BPF run-time statistics stopped", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := ob.serveHTTP(srv, ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve metrics: %w", err)
		}
	}()
	running := []any{"listen", ln.Addr().String(), "transport", ob.cfg.Transport,
		"map_type", ob.cfg.MapType, "sample_rate", ob.cfg.SampleRate}
	if ob.cfg.WebConfigFile != "" {
		running = append(running, "web_config_file", ob.cfg.WebConfigFile)
	}
	ob.log.Info("observer running", running...)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	ob.health.stop()
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shut)
	ob.closeEvents() // unblocks the read loop
	wg.Wait()
	return errors.Join(runErr, ob.Close())
}

// serveHTTP serves srv on ln: plain HTTP without --web.config.file, else
// as the exporter-toolkit's web config says (TLS, client certificates,
// basic auth, for every path). The toolkit reads the file again for each
// connection and request, so renewed certificates and changed users take
// effect without a restart.
func (ob *Observer) serveHTTP(srv *http.Server, ln net.Listener) error {
	if ob.cfg.WebConfigFile == "" {
		return srv.Serve(ln)
	}
	// Failed handshakes (a client without the certificate, a TCP probe,
	// plain HTTP) are the client's to report: debug lines here, not the
	// standard logger's unstructured ones.
	srv.ErrorLog = slog.NewLogLogger(ob.log.Handler(), slog.LevelDebug)
	path := ob.cfg.WebConfigFile
	return web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &path}, ob.log)
}

// Handler serves /metrics and /healthz (200 "ok", or 503 and the reason:
// see health.check).
func (ob *Observer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(ob.Registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(ob.log.Handler(), slog.LevelWarn)}))
	if os.Getenv("EBPF_NET_OBS_PPROF") != "" {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	mux.Handle("/healthz", ob.health)
	return mux
}

// attached says, from the kernel, whether every program is still attached.
func (ob *Observer) attached() error {
	ob.kernMu.RLock()
	defer ob.kernMu.RUnlock()
	if ob.kern == nil {
		return errors.New("programs unloaded")
	}
	return ob.kern.Attached()
}

// aliveEvery is how many records the read loop applies between two signs
// of life while records keep coming (it gives one whenever it goes idle).
const aliveEvery = 1024

func (ob *Observer) readLoop() error {
	var ev reader.Event
	var warned, warnedFlush bool
	var applied uint
	drain := drainInterval(ob.cfg.FlushInterval)
	for {
		err := ob.events.Read(&ev)
		switch {
		case err == nil:
			ob.Table.Close(&ev)
			if applied++; applied%aliveEvery == 0 {
				ob.health.readAlive()
			}
			continue
		case errors.Is(err, reader.ErrClosed):
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			ob.health.readAlive() // idle, and reading
		default:
			if !warned {
				ob.log.Warn("event read failed; continuing", "err", err)
				warned = true
			}
		}
		ob.events.Wait(drain)
		// Records in CPUs' partial batches join the transport now, so
		// none waits longer than a drain interval.
		if err := ob.kern.FlushCloses(); err != nil && !warnedFlush {
			ob.log.Warn("close records not flushed from the kernel's batches; they wait for more closes on their CPU", "err", err)
			warnedFlush = true
		}
	}
}

func (ob *Observer) flushLoop(ctx context.Context) {
	t := time.NewTicker(ob.cfg.FlushInterval)
	defer t.Stop()
	var warnedFull bool
	for {
		ob.Flush()
		if k, err := ob.KernelCounters(); err == nil && !warnedFull {
			if k["map_full"] > 0 || k["transport_full"] > 0 {
				ob.log.Warn("events lost: kernel map or event buffer full (see ebpf_net_obs_events_lost_total); raise --max-connections or --ringbuf-bytes/--perf-buffer-bytes",
					"map_full", k["map_full"], "transport_full", k["transport_full"])
				warnedFull = true
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Flush reads the open connections from the kernel once. A failed read
// stops nothing: the table is released whatever the walk did, the next
// flush tries again, and /healthz turns 503 once flushes have failed for
// its limit.
func (ob *Observer) Flush() error {
	// The thread's own CPU clock counts the flush only if the flush stays
	// on one thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start, cpu0 := time.Now(), threadCPU()
	defer func() {
		ob.flushSeconds.Observe(time.Since(start).Seconds())
		ob.flushCPUSeconds.Add(max(0, threadCPU()-cpu0))
	}()
	if err := ob.kern.RefreshLive(); err != nil {
		ob.log.Warn("live counters not refreshed", "err", err)
	}
	n, err := ob.Table.Flush(ob.conns.Each)
	ob.Table.Sweep()
	if err != nil {
		ob.health.flushFailed(err)
		if !ob.failing.Swap(true) {
			ob.log.Warn("flush failed; retrying every --flush-interval", "err", err)
		}
		return fmt.Errorf("flush: %w", err)
	}
	ob.entries.Store(int64(n))
	ob.health.flushed()
	if ob.failing.Swap(false) {
		ob.log.Info("flush recovered")
	}
	return nil
}

// threadCPU is the calling thread's CPU time in seconds.
func threadCPU() float64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return float64(ts.Nano()) / 1e9
}

// KernelCounters sums the programs' per-CPU counters.
func (ob *Observer) KernelCounters() (map[string]uint64, error) {
	out := make(map[string]uint64, len(statNames))
	var vals []uint64
	for i, name := range statNames {
		if err := ob.kern.Objs.Stats.Lookup(uint32(i), &vals); err != nil {
			return nil, fmt.Errorf("read kernel counter %s: %w", name, err)
		}
		var sum uint64
		for _, v := range vals {
			sum += v
		}
		out[name] = sum
	}
	return out, nil
}

func (ob *Observer) RunStats() (map[string]runstats.Totals, time.Duration, error) {
	return ob.runStats.Read()
}

// LastFlush is when the last successful flush ended (zero: none yet).
func (ob *Observer) LastFlush() time.Time { return ob.health.LastFlush() }

func (ob *Observer) ConnMapFill() (int, uint32) {
	return int(ob.entries.Load()), ob.cfg.MaxConnections
}

func (ob *Observer) UserCounters() map[string]uint64 {
	c := ob.Table.Counters()
	return map[string]uint64{
		"close_applied": c.Closes, "flush": c.Snapshots, "folded": c.Evicted,
		"series_overflow": c.SeriesOverflow, "open_lost": c.LostOpen,
	}
}

func (ob *Observer) Features() map[string]bool {
	// bpf_stats: the kernel counts run times, switched by the observer
	// (--bpf-stats=on or sampled) or by someone else (the sysctl).
	out := map[string]bool{"bpf_stats": ob.runStats.Counting(), "percpu_merge": true, "tp_btf": true, "live_from_sockets": true, "close_batches": true}
	for f := range ob.kern.Disabled {
		out[f] = false
	}
	return out
}

// Close stops optional parts and detaches everything from the kernel.
func (ob *Observer) Close() error {
	var errs []error
	for i := len(ob.extra) - 1; i >= 0; i-- {
		errs = append(errs, ob.extra[i]())
	}
	ob.extra = nil
	ob.closeEvents()
	ob.kernMu.Lock()
	defer ob.kernMu.Unlock()
	if ob.runStats != nil {
		errs = append(errs, ob.runStats.Close())
	}
	if ob.kern != nil {
		errs = append(errs, ob.kern.Close())
		ob.kern = nil
	}
	return errors.Join(errs...)
}
