package prom

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/runstats"
)

// SelfSource is what the observer knows about its own cost and health.
type SelfSource interface {
	// KernelCounters are the BPF programs' own event counters by name.
	KernelCounters() (map[string]uint64, error)
	// RunStats are each program's run time and runs (exact, or scaled up
	// from sampled windows) and how long the statistics were on for them.
	RunStats() (map[string]runstats.Totals, time.Duration, error)
	// ConnMapFill is the entry count at the last flush and the capacity.
	ConnMapFill() (entries int, capacity uint32)
	// UserCounters are user-space totals by name (series overflow, ...).
	UserCounters() map[string]uint64
	// LastFlush is when the last successful flush ended (zero: none yet).
	LastFlush() time.Time
	Features() map[string]bool
}

// SelfCollector reports the observer on itself: events, losses, map fill,
// BPF run time per program, and how long this scrape took.
type SelfCollector struct {
	src                                         SelfSource
	info                                        *prometheus.Desc
	events, lost, sampledOut, untracked         *prometheus.Desc
	mapEntries, mapCapacity, runSeconds, runs   *prometheus.Desc
	statsOnSeconds                              *prometheus.Desc
	user, feature, scrapeSeconds, scrapeSuccess *prometheus.Desc
	lastFlush                                   *prometheus.Desc
	infoLabels                                  []string
}

// NewSelfCollector reports src; info labels describe the build and config.
func NewSelfCollector(src SelfSource, info map[string]string) *SelfCollector {
	var names, values []string
	for _, k := range []string{"version", "transport", "map_type", "sample_rate", "kernel"} {
		names, values = append(names, k), append(values, info[k])
	}
	return &SelfCollector{
		src:            src,
		infoLabels:     values,
		info:           prometheus.NewDesc(ns+"_build_info", "Build and configuration of this observer; value 1.", names, nil),
		events:         prometheus.NewDesc(ns+"_events_total", "Events the kernel programs handled, by source.", []string{"source"}, nil),
		lost:           prometheus.NewDesc(ns+"_events_lost_total", "Events lost: transport_full (ring/perf buffer full), map_full (connection map full), recursion (a program run the kernel skipped because the program was already running on that CPU).", []string{"reason"}, nil),
		sampledOut:     prometheus.NewDesc(ns+"_events_sampled_out_total", "RTT sampling draws --sample-rate left out: connections (per-ACK samples where live counters ride on ACKs, see README).", nil, nil),
		untracked:      prometheus.NewDesc(ns+"_untracked_closes_total", "Closes of connections the observer never saw open (opened before it started, or evicted from an LRU map).", nil, nil),
		mapEntries:     prometheus.NewDesc(ns+"_map_entries", "Entries in a kernel map at the last flush.", []string{"map"}, nil),
		mapCapacity:    prometheus.NewDesc(ns+"_map_capacity", "Capacity of a kernel map.", []string{"map"}, nil),
		runSeconds:     prometheus.NewDesc(ns+"_bpf_program_run_seconds_total", "Time the kernel spent running each BPF program (kernel BPF statistics; with --bpf-stats=sampled scaled up from the windows they were on).", []string{"program"}, nil),
		runs:           prometheus.NewDesc(ns+"_bpf_program_runs_total", "Runs of each BPF program (kernel BPF statistics; with --bpf-stats=sampled scaled up from the windows they were on).", []string{"program"}, nil),
		statsOnSeconds: prometheus.NewDesc(ns+"_bpf_stats_enabled_seconds_total", "Time the kernel's BPF statistics were on for the run times above (--bpf-stats).", nil, nil),
		user:           prometheus.NewDesc(ns+"_agent_events_total", "User-space bookkeeping by kind: closes applied, flushes, connections folded away, series over the cap, opens lost.", []string{"kind"}, nil),
		feature:        prometheus.NewDesc(ns+"_feature_enabled", "Whether an optional feature is on (1) or was turned off on this kernel (0).", []string{"feature"}, nil),
		scrapeSeconds:  prometheus.NewDesc(ns+"_scrape_collector_duration_seconds", "Time this scrape spent reading kernel state.", nil, nil),
		scrapeSuccess:  prometheus.NewDesc(ns+"_scrape_collector_success", "Whether reading kernel state succeeded.", nil, nil),
		lastFlush:      prometheus.NewDesc(ns+"_last_flush_timestamp_seconds", "When the last successful flush of the kernel's connection map ended, in unix seconds (0 before the first).", nil, nil),
	}
}

func (c *SelfCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.info, c.events, c.lost, c.sampledOut, c.untracked, c.mapEntries,
		c.mapCapacity, c.runSeconds, c.runs, c.statsOnSeconds, c.user, c.feature, c.scrapeSeconds, c.scrapeSuccess, c.lastFlush} {
		ch <- d
	}
}

// eventSources maps kernel counter names to the `source` label.
var eventSources = map[string]string{
	"open_active": "open_active", "open_passive": "open_passive", "close": "close",
	"connect_failed": "connect_failed", "reset_rx": "reset_received", "reset_tx": "reset_sent",
	"retransmit": "retransmit", "rtt_sample": "rtt_sample",
}

func (c *SelfCollector) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	ok := 1.0
	counter := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, c.infoLabels...)
	if k, err := c.src.KernelCounters(); err != nil {
		ok = 0
	} else {
		for name, source := range eventSources {
			counter(c.events, k[name], source)
		}
		counter(c.lost, k["transport_full"], "transport_full")
		counter(c.lost, k["map_full"], "map_full")
		counter(c.sampledOut, k["rtt_sampled_out"])
		counter(c.untracked, k["untracked_close"])
	}
	var flushed float64
	if t := c.src.LastFlush(); !t.IsZero() {
		flushed = float64(t.Unix()) + float64(t.Nanosecond())/1e9
	}
	ch <- prometheus.MustNewConstMetric(c.lastFlush, prometheus.GaugeValue, flushed)
	entries, capacity := c.src.ConnMapFill()
	ch <- prometheus.MustNewConstMetric(c.mapEntries, prometheus.GaugeValue, float64(entries), "conns")
	ch <- prometheus.MustNewConstMetric(c.mapCapacity, prometheus.GaugeValue, float64(capacity), "conns")
	var missed uint64
	if progs, on, err := c.src.RunStats(); err != nil {
		ok = 0
	} else {
		for name, t := range progs {
			ch <- prometheus.MustNewConstMetric(c.runSeconds, prometheus.CounterValue, t.RunSeconds, name)
			ch <- prometheus.MustNewConstMetric(c.runs, prometheus.CounterValue, t.Runs, name)
			missed += t.Misses
		}
		ch <- prometheus.MustNewConstMetric(c.statsOnSeconds, prometheus.CounterValue, on.Seconds())
	}
	// A tracing program that fires while it already runs on this CPU (a
	// softirq close interrupting a process-context one) is skipped by the
	// kernel; that event is lost like any other.
	counter(c.lost, missed, "recursion")
	for kind, v := range c.src.UserCounters() {
		counter(c.user, v, kind)
	}
	for f, on := range c.src.Features() {
		v := 0.0
		if on {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.feature, prometheus.GaugeValue, v, f)
	}
	ch <- prometheus.MustNewConstMetric(c.scrapeSeconds, prometheus.GaugeValue, time.Since(start).Seconds())
	ch <- prometheus.MustNewConstMetric(c.scrapeSuccess, prometheus.GaugeValue, ok)
}
