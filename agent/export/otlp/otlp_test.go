package otlp_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	colpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/conntrack"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/export/otlp"
	"github.com/ebpf-net-obs/ebpf-net-obs/bpf"
)

func TestMetricsURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://collector:4318":            "http://collector:4318/v1/metrics",
		"http://collector:4318/":           "http://collector:4318/v1/metrics",
		"https://prom:9090/api/v1/otlp":    "https://prom:9090/api/v1/otlp/v1/metrics",
		"http://127.0.0.1:4318/v1/metrics": "http://127.0.0.1:4318/v1/metrics",
		"http://[::1]:4318/otlp":           "http://[::1]:4318/otlp/v1/metrics",
	} {
		u, err := otlp.MetricsURL(in)
		if err != nil || u.String() != want {
			t.Errorf("MetricsURL(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
	for _, bad := range []string{"collector:4318", "ftp://x:1", "http://", "http://:4318", "http://x:1/?a=b", "http://x y"} {
		_, err := otlp.MetricsURL(bad)
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "--otlp-endpoint") {
			t.Errorf("MetricsURL(%q): want a one-line error naming --otlp-endpoint, got %v", bad, err)
		}
	}
}

// oneClosedConn is a table holding one closed client connection to
// 192.0.2.7:443 that moved 1000 bytes out and 2000 in.
func oneClosedConn() *conntrack.Table {
	tb := conntrack.New(conntrack.Options{Retention: 30 * time.Second})
	ev := &bpf.TcpobsConnEvent{Sk: 1, EndNs: 0, BytesSent: 1000, BytesReceived: 2000, TotalRetrans: 2}
	ev.State.Family = 2
	copy(ev.State.Saddr[:], []byte{127, 0, 0, 1})
	copy(ev.State.Daddr[:], []byte{192, 0, 2, 7})
	ev.State.Sport, ev.State.Dport = 40000, 443
	ev.State.Direction = uint8(conntrack.DirActive)
	ev.State.Flags = conntrack.FlagEstablished
	tb.Close(ev)
	return tb
}

// receiver collects the OTLP requests an httptest server gets.
type receiver struct {
	mu   sync.Mutex
	reqs []*colpb.ExportMetricsServiceRequest
	path string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := &colpb.ExportMetricsServiceRequest{}
	if err := proto.Unmarshal(body, req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.reqs, rc.path = append(rc.reqs, req), r.URL.Path
	rc.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(nil)
}

func (rc *receiver) last() *colpb.ExportMetricsServiceRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.reqs) == 0 {
		return nil
	}
	return rc.reqs[len(rc.reqs)-1]
}

func TestPushHTTPAndHTTPS(t *testing.T) {
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			rc := &receiver{}
			srv := httptest.NewUnstartedServer(rc)
			var tlsCfg *tls.Config
			if scheme == "https" {
				srv.StartTLS()
				tlsCfg = srv.Client().Transport.(*http.Transport).TLSClientConfig
			} else {
				srv.Start()
			}
			defer srv.Close()
			stop, err := otlp.Start(context.Background(), otlp.Options{
				Endpoint: srv.URL + "/base", Interval: 100 * time.Millisecond, Table: oneClosedConn(),
				NodeName: "node-a", Version: "test", TLS: tlsCfg,
			}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for rc.last() == nil && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if err := stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			req := rc.last()
			if req == nil {
				t.Fatal("no OTLP request within 5s")
			}
			if rc.path != "/base/v1/metrics" {
				t.Errorf("posted to %s, want /base/v1/metrics", rc.path)
			}
			checkRequest(t, req)
		})
	}
}

func checkRequest(t *testing.T, req *colpb.ExportMetricsServiceRequest) {
	t.Helper()
	rm := req.GetResourceMetrics()[0]
	res := map[string]string{}
	for _, kv := range rm.GetResource().GetAttributes() {
		res[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	if res["service.name"] != "ebpf-net-obs" || res["k8s.node.name"] != "node-a" || res["service.instance.id"] != "node-a" || res["host.name"] == "" {
		t.Errorf("resource attributes %v", res)
	}
	got := map[string]*metricpb.Metric{}
	for _, sm := range rm.GetScopeMetrics() {
		for _, m := range sm.GetMetrics() {
			got[m.GetName()] = m
		}
	}
	sum := func(name string) int64 {
		m := got[name]
		s := m.GetSum()
		if s == nil || !s.GetIsMonotonic() || s.GetAggregationTemporality() != metricpb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE {
			t.Errorf("%s: want a cumulative monotonic sum, got %v", name, m)
			return -1
		}
		var v int64
		for _, p := range s.GetDataPoints() {
			v += p.GetAsInt()
		}
		return v
	}
	for name, want := range map[string]int64{
		"ebpf_net_obs_bytes_sent": 1000, "ebpf_net_obs_bytes_received": 2000, "ebpf_net_obs_retransmits": 2,
		"ebpf_net_obs_connections_opened": 1, "ebpf_net_obs_connections_closed": 1, "ebpf_net_obs_connections_failed": 0,
		"ebpf_net_obs_resets": 0,
	} {
		if v := sum(name); v != want {
			t.Errorf("%s = %d, want %d", name, v, want)
		}
	}
	if n := len(got["ebpf_net_obs_resets"].GetSum().GetDataPoints()); n != 2 {
		t.Errorf("ebpf_net_obs_resets: %d points, want 2 (kind=received, kind=sent)", n)
	}
	p := got["ebpf_net_obs_bytes_sent"].GetSum().GetDataPoints()[0]
	labels := map[string]string{}
	for _, kv := range p.GetAttributes() {
		labels[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	if labels["remote_ip"] != "192.0.2.7" || labels["service_port"] != "443" || labels["direction"] != "active" {
		t.Errorf("bytes_sent attributes %v", labels)
	}
	if g := got["ebpf_net_obs_connections_active"].GetGauge(); g == nil || g.GetDataPoints()[0].GetAsInt() != 0 {
		t.Errorf("connections_active: want gauge 0, got %v", got["ebpf_net_obs_connections_active"])
	}
	for _, name := range []string{"ebpf_net_obs_rtt_seconds", "ebpf_net_obs_connection_duration_seconds"} {
		h := got[name].GetHistogram()
		if h == nil || h.GetAggregationTemporality() != metricpb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE {
			t.Errorf("%s: want a cumulative histogram, got %v", name, got[name])
			continue
		}
		dp := h.GetDataPoints()[0]
		if len(dp.GetBucketCounts()) != len(dp.GetExplicitBounds())+1 {
			t.Errorf("%s: %d buckets for %d bounds", name, len(dp.GetBucketCounts()), len(dp.GetExplicitBounds()))
		}
	}
}

// An unreachable collector is not fatal and is logged once per streak.
func TestUnreachableLoggedOncePerStreak(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusBadRequest) // not retryable: each push fails at once
	}))
	defer srv.Close()
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&buf, &mu}, nil))
	stop, err := otlp.Start(context.Background(), otlp.Options{Endpoint: srv.URL, Interval: 100 * time.Millisecond, Table: oneClosedConn()}, log)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	if err := stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(buf.String(), "OTLP push failed"); n != 1 {
		t.Errorf("failure logged %d times over ~7 failed pushes, want 1:\n%s", n, buf.String())
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
