package prom_test

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/conntrack"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/export/prom"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/runstats"
	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
)

var update = flag.Bool("update", false, "rewrite testdata/exposition.golden")

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type resolver struct{}

func (resolver) Workload(cgroupID uint64, _ uint32) conntrack.Workload {
	if cgroupID == 77 {
		return conntrack.Workload{ContainerID: "c0ffee", PodUID: "uid-1", Pod: "web-0", Namespace: "shop"}
	}
	return conntrack.Workload{}
}

func (resolver) Peer(ip netip.Addr) (string, string, bool) {
	if ip == netip.MustParseAddr("10.0.0.2") {
		return "data", "db-0", true
	}
	return "", "", false
}

func state(src, dst string, pid uint32, comm string, cgroup uint64, start time.Duration, dir conntrack.Direction, flags uint32) conntrack.State {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	var st conntrack.State
	if s.Addr().Is4() {
		st.Family = 2
		a, b := s.Addr().As4(), d.Addr().As4()
		copy(st.Saddr[:], a[:])
		copy(st.Daddr[:], b[:])
	} else {
		st.Family, st.Saddr, st.Daddr = 10, s.Addr().As16(), d.Addr().As16()
	}
	st.Sport, st.Dport = s.Port(), d.Port()
	st.Owner.Pid, st.Owner.CgroupId = pid, cgroup
	for i := range len(comm) {
		st.Owner.Comm[i] = int8(comm[i])
	}
	st.StartNs, st.Direction, st.Flags = uint64(start), uint8(dir), flags
	return st
}

// fixedTable: a closed client connection with RTT samples, an open server
// connection (IPv6) and a failed connect that was reset.
func fixedTable(t testing.TB) *conntrack.Table {
	t.Helper()
	tb := conntrack.New(conntrack.Options{
		MaxSeries: 10, Resolver: resolver{}, Retention: 30 * time.Second,
		Now:         func() time.Time { return t0.Add(5 * time.Second) },
		KtimeToWall: func(ns uint64) time.Time { return t0.Add(time.Duration(ns)) },
	})
	est := conntrack.FlagEstablished

	ev := &bpf.TcpobsConnEvent{Sk: 1, EndNs: uint64(3500 * time.Millisecond), BytesSent: 1000, BytesReceived: 2000,
		TotalRetrans: 3, SrttUs: 1500, RttvarUs: 200, SndCwnd: 10,
		State: state("10.0.0.1:40000", "10.0.0.2:5432", 4242, "psql", 77, time.Second, conntrack.DirActive, est)}
	ev.State.RttHist[0], ev.State.RttHist[3], ev.State.RttSamples, ev.State.RttSumUs = 2, 5, 7, 40
	tb.Close(ev)

	live := state("[fd00::1]:8080", "[fd00::9]:51000", 99, "nginx", 0, 2*time.Second, conntrack.DirPassive, est)
	live.AckedBase, live.Sent, live.BytesReceived = 1, 501, 300
	_, _ = tb.Flush(func(observe func(uint64, *conntrack.State)) (int, error) {
		observe(2, &live)
		return 1, nil
	})

	failed := &bpf.TcpobsConnEvent{Sk: 3, EndNs: uint64(4 * time.Second),
		State: state("10.0.0.1:40001", "10.0.0.3:81", 4242, "psql", 77, 3*time.Second, conntrack.DirActive,
			conntrack.FlagConnectFailed|conntrack.FlagResetRx)}
	tb.Close(failed)
	return tb
}

type selfSource struct {
	tb           *conntrack.Table
	kernelErr    error
	neverFlushed bool
}

// flushedAt is when the fake observer's last flush ended.
var flushedAt = time.Date(2026, 1, 1, 0, 0, 5, 250_000_000, time.UTC)

func (s selfSource) LastFlush() time.Time {
	if s.neverFlushed {
		return time.Time{}
	}
	return flushedAt
}

func (s selfSource) KernelCounters() (map[string]uint64, error) {
	if s.kernelErr != nil {
		return nil, s.kernelErr
	}
	return map[string]uint64{"open_active": 2, "open_passive": 1, "close": 2, "connect_failed": 1, "reset_rx": 1,
		"rtt_sample": 7, "rtt_sampled_out": 9, "transport_full": 4, "untracked_close": 2}, nil
}
func (selfSource) RunStats() (map[string]runstats.Totals, time.Duration, error) {
	return map[string]runstats.Totals{"set_state": {RunSeconds: 0.25, Runs: 1000, Misses: 3}}, 2 * time.Second, nil
}
func (selfSource) ConnMapFill() (int, uint32) { return 1, 65536 }
func (selfSource) Features() map[string]bool {
	return map[string]bool{"sock_ops": true, "fentry": false}
}
func (s selfSource) UserCounters() map[string]uint64 {
	c := s.tb.Counters()
	return map[string]uint64{"closes": c.Closes, "snapshots": c.Snapshots, "evicted": c.Evicted,
		"series_overflow": c.SeriesOverflow, "lost_open": c.LostOpen}
}

var info = map[string]string{"version": "v0.0.0-test", "transport": "ringbuf", "map_type": "hash", "sample_rate": "1", "kernel": "6.1.0"}

func gather(t *testing.T, src selfSource) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(prom.NewConnCollector(src.tb), prom.NewRollupCollector(src.tb), prom.NewSelfCollector(src, info))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return mfs
}

// find returns the metric of family name whose labels include want.
func find(t *testing.T, mfs []*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	var hits []*dto.Metric
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.Metric {
			got := map[string]string{}
			for _, l := range m.Label {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue metrics
				}
			}
			hits = append(hits, m)
		}
	}
	if len(hits) != 1 {
		t.Fatalf("%s%v: %d series, want 1", name, want, len(hits))
	}
	return hits[0]
}

// sample is one expected series value.
type sample struct {
	name   string
	labels map[string]string
	want   float64
}

func expect(t *testing.T, mfs []*dto.MetricFamily, samples []sample) {
	t.Helper()
	for _, c := range samples {
		if got := value(find(t, mfs, c.name, c.labels)); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return math.NaN()
}

func family(mfs []*dto.MetricFamily, name string) *dto.MetricFamily {
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	return nil
}

func TestConnectionSeries(t *testing.T) {
	mfs := gather(t, selfSource{tb: fixedTable(t)})
	client := map[string]string{"src_ip": "10.0.0.1", "src_port": "40000", "dst_ip": "10.0.0.2", "dst_port": "5432",
		"pid": "4242", "process_name": "psql", "container_id": "c0ffee", "pod": "web-0", "namespace": "shop"}
	server := map[string]string{"src_ip": "fd00::1", "src_port": "8080", "dst_ip": "fd00::9", "dst_port": "51000",
		"pid": "99", "process_name": "nginx", "container_id": "", "pod": "", "namespace": ""}
	expect(t, mfs, []sample{
		{"ebpf_net_obs_connection_bytes_sent_total", client, 1000},
		{"ebpf_net_obs_connection_bytes_received_total", client, 2000},
		{"ebpf_net_obs_connection_retransmits_total", client, 3},
		{"ebpf_net_obs_connection_srtt_seconds", client, 0.0015},
		{"ebpf_net_obs_connection_bytes_sent_total", server, 500},
		{"ebpf_net_obs_connection_bytes_received_total", server, 300},
	})
	// Three connections, each with every label; no srtt for the two without one.
	if n := len(family(mfs, "ebpf_net_obs_connection_bytes_sent_total").Metric); n != 3 {
		t.Errorf("%d connections exported, want 3", n)
	}
	if n := len(family(mfs, "ebpf_net_obs_connection_srtt_seconds").Metric); n != 1 {
		t.Errorf("%d srtt series, want 1 (only connections with an RTT)", n)
	}
	for _, m := range family(mfs, "ebpf_net_obs_connection_bytes_sent_total").Metric {
		var names []string
		for _, l := range m.Label {
			names = append(names, l.GetName())
		}
		want := slices.Sorted(slices.Values(conntrack.ConnLabelNames))
		if !slices.Equal(names, want) {
			t.Errorf("labels %v, want %v", names, want)
		}
	}
}

func TestRollupSeries(t *testing.T) {
	mfs := gather(t, selfSource{tb: fixedTable(t)})
	psql := map[string]string{"process_name": "psql", "container_id": "c0ffee", "pod": "web-0", "namespace": "shop",
		"remote_ip": "10.0.0.2", "service_port": "5432", "direction": "active", "remote_pod": "db-0", "remote_namespace": "data"}
	failed := map[string]string{"process_name": "psql", "remote_ip": "10.0.0.3", "service_port": "81", "direction": "active", "remote_pod": ""}
	nginx := map[string]string{"process_name": "nginx", "remote_ip": "fd00::9", "service_port": "8080", "direction": "passive"}
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for a, b := range m {
			out[a] = b
		}
		return out
	}
	expect(t, mfs, []sample{
		{"ebpf_net_obs_connections_opened_total", psql, 1},
		{"ebpf_net_obs_connections_closed_total", psql, 1},
		{"ebpf_net_obs_connections_failed_total", psql, 0},
		{"ebpf_net_obs_connections_active", psql, 0},
		{"ebpf_net_obs_bytes_sent_total", psql, 1000},
		{"ebpf_net_obs_bytes_received_total", psql, 2000},
		{"ebpf_net_obs_retransmits_total", psql, 3},
		{"ebpf_net_obs_connections_failed_total", failed, 1},
		{"ebpf_net_obs_connections_closed_total", failed, 1},
		{"ebpf_net_obs_resets_total", with(failed, "kind", "received"), 1},
		{"ebpf_net_obs_resets_total", with(failed, "kind", "sent"), 0},
		{"ebpf_net_obs_connections_active", nginx, 1},
		{"ebpf_net_obs_connections_opened_total", nginx, 1},
		{"ebpf_net_obs_bytes_sent_total", nginx, 500},
	})

	rtt := find(t, mfs, "ebpf_net_obs_rtt_seconds", psql).Histogram
	if rtt.GetSampleCount() != 7 || math.Abs(rtt.GetSampleSum()-40e-6) > 1e-15 {
		t.Errorf("rtt count=%d sum=%g, want 7 and 40e-6", rtt.GetSampleCount(), rtt.GetSampleSum())
	}
	if len(rtt.Bucket) != len(conntrack.RTTBounds) {
		t.Errorf("%d rtt buckets, want %d", len(rtt.Bucket), len(conntrack.RTTBounds))
	}
	for _, b := range rtt.Bucket { // kernel bucket 0 (<1us) and 3 ([4,8)us)
		want := uint64(0)
		switch ub := b.GetUpperBound(); {
		case ub >= 8e-6:
			want = 7
		case ub >= 1e-6:
			want = 2
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("rtt le=%g: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	dur := find(t, mfs, "ebpf_net_obs_connection_duration_seconds", psql).Histogram
	if dur.GetSampleCount() != 1 || dur.GetSampleSum() != 2.5 {
		t.Errorf("duration count=%d sum=%g, want 1 and 2.5", dur.GetSampleCount(), dur.GetSampleSum())
	}
	for _, b := range dur.Bucket {
		if want := uint64(b2u(b.GetUpperBound() >= 2.5)); b.GetCumulativeCount() != want {
			t.Errorf("duration le=%g: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if d := find(t, mfs, "ebpf_net_obs_connection_duration_seconds", failed).Histogram; d.GetSampleCount() != 0 {
		t.Errorf("failed connect has a duration: %v", d)
	}
}

func b2u(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestSelfSeries(t *testing.T) {
	tb := fixedTable(t)
	mfs := gather(t, selfSource{tb: tb})
	expect(t, mfs, []sample{
		{"ebpf_net_obs_build_info", info, 1},
		{"ebpf_net_obs_events_total", map[string]string{"source": "open_active"}, 2},
		{"ebpf_net_obs_events_total", map[string]string{"source": "reset_received"}, 1},
		{"ebpf_net_obs_events_total", map[string]string{"source": "reset_sent"}, 0},
		{"ebpf_net_obs_events_total", map[string]string{"source": "rtt_sample"}, 7},
		{"ebpf_net_obs_events_lost_total", map[string]string{"reason": "transport_full"}, 4},
		{"ebpf_net_obs_events_lost_total", map[string]string{"reason": "map_full"}, 0},
		{"ebpf_net_obs_events_lost_total", map[string]string{"reason": "recursion"}, 3},
		{"ebpf_net_obs_bpf_program_run_seconds_total", map[string]string{"program": "set_state"}, 0.25},
		{"ebpf_net_obs_bpf_program_runs_total", map[string]string{"program": "set_state"}, 1000},
		{"ebpf_net_obs_bpf_stats_enabled_seconds_total", nil, 2},
		{"ebpf_net_obs_events_sampled_out_total", nil, 9},
		{"ebpf_net_obs_untracked_closes_total", nil, 2},
		{"ebpf_net_obs_map_entries", map[string]string{"map": "conns"}, 1},
		{"ebpf_net_obs_map_capacity", map[string]string{"map": "conns"}, 65536},
		{"ebpf_net_obs_agent_events_total", map[string]string{"kind": "closes"}, 2},
		{"ebpf_net_obs_agent_events_total", map[string]string{"kind": "snapshots"}, 1},
		{"ebpf_net_obs_feature_enabled", map[string]string{"feature": "sock_ops"}, 1},
		{"ebpf_net_obs_feature_enabled", map[string]string{"feature": "fentry"}, 0},
		{"ebpf_net_obs_scrape_collector_success", nil, 1},
		{"ebpf_net_obs_last_flush_timestamp_seconds", nil, 1767225605.25},
	})
	if mf := family(mfs, "ebpf_net_obs_last_flush_timestamp_seconds"); mf.GetType() != dto.MetricType_GAUGE {
		t.Errorf("last_flush_timestamp_seconds is a %v, want a gauge", mf.GetType())
	}
	// Before the first flush: 0, not the zero time's -62135596800.
	mfs = gather(t, selfSource{tb: tb, neverFlushed: true})
	if v := value(find(t, mfs, "ebpf_net_obs_last_flush_timestamp_seconds", nil)); v != 0 {
		t.Errorf("last_flush_timestamp_seconds = %v before any flush, want 0", v)
	}
	if n := len(family(mfs, "ebpf_net_obs_events_total").Metric); n != 8 {
		t.Errorf("%d event sources, want 8", n)
	}
	if d := value(find(t, mfs, "ebpf_net_obs_scrape_collector_duration_seconds", nil)); d < 0 || d > 10 {
		t.Errorf("scrape duration %v", d)
	}

	// Kernel counters unreadable: the scrape says so and omits them.
	mfs = gather(t, selfSource{tb: tb, kernelErr: errors.New("map lookup failed")})
	if v := value(find(t, mfs, "ebpf_net_obs_scrape_collector_success", nil)); v != 0 {
		t.Errorf("scrape_collector_success = %v after a failed read, want 0", v)
	}
	if family(mfs, "ebpf_net_obs_events_total") != nil {
		t.Error("events_total exported without kernel counters")
	}
}

// exposition renders mfs in the text format.
func exposition(t *testing.T, mfs []*dto.MetricFamily) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found and CI=true: install it (apt-get install -y prometheus)")
		}
		t.Skip("SKIPPED: promtool not found; the exposition was not linted (apt-get install -y prometheus)")
	}
	text := exposition(t, gather(t, selfSource{tb: fixedTable(t)}))
	path := filepath.Join(t.TempDir(), "metrics.prom")
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = f
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics %s: %v\n%s", path, err, out)
	}
}

var scrapeDuration = regexp.MustCompile(`(?m)^(ebpf_net_obs_scrape_collector_duration_seconds) \S+$`)

func TestExpositionGolden(t *testing.T) {
	text := exposition(t, gather(t, selfSource{tb: fixedTable(t)}))
	text = scrapeDuration.ReplaceAll(text, []byte("$1 <elided>"))
	golden := filepath.Join("testdata", "exposition.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, text, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", golden)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (regenerate with: go test ./agent/export/prom -update)", err)
	}
	if !bytes.Equal(text, want) {
		t.Errorf("exposition differs from %s (if intended: go test ./agent/export/prom -update)\n%s", golden, lineDiff(string(want), string(text)))
	}
}

// lineDiff lists the lines only in want (-) or only in got (+).
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for _, l := range w {
		if !slices.Contains(g, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}
