package observer

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPrometheusScrapesExactBytes: a real Prometheus (Debian's package)
// scrapes the in-process observer every second; PromQL must return the
// byte and connection counts the test's own sockets measured.
func TestPrometheusScrapesExactBytes(t *testing.T) {
	r := start(t, nil)
	bin := needBinary(t, "prometheus", "apt-get install -y prometheus (make deps-test does)")
	cfg := filepath.Join(t.TempDir(), "prometheus.yml")
	target := strings.TrimPrefix(r.url, "http://")
	// 1s is the aim; under -race on a busy shared host a scrape of every
	// connection on the host can take longer, and Prometheus requires
	// scrape_timeout <= scrape_interval, so both are 5s (seen: >3s while
	// another workload flooded the event transport).
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `global:
  scrape_interval: 5s
  scrape_timeout: 5s
  evaluation_interval: 1s
scrape_configs:
  - job_name: ebpf-net-obs
    static_configs:
      - targets: [%q]
`, target), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPrometheus(t, bin, "--config.file="+cfg)

	tr := makeTraffic(t, 3)
	t0 := time.Now()
	eventually(t, 60*time.Second, "a successful scrape", func() (bool, string) {
		up, ok, detail := p.query(t, `up{job="ebpf-net-obs"}`)
		_, _, took := p.query(t, `scrape_duration_seconds{job="ebpf-net-obs"}`)
		return ok && up == 1, detail + "; " + took
	})
	// The client's end by its whole tuple: another program on this host may
	// have the same ephemeral port towards another peer.
	for i, cp := range tr.clientPort {
		end := fmt.Sprintf(`src_port="%d",dst_port="%d"`, cp, tr.serverPort)
		p.expectQuery(t, `ebpf_net_obs_connection_bytes_sent_total{`+end+`}`, float64(tr.req[i]))
		p.expectQuery(t, `ebpf_net_obs_connection_bytes_received_total{`+end+`}`, float64(tr.resp[i]))
	}
	sp := tr.serverPort
	// Both ends are on this host: the client rollup sent the requests, the
	// server rollup the responses, both under the server's port.
	p.expectQuery(t, fmt.Sprintf(`sum by (service_port) (ebpf_net_obs_bytes_sent_total{service_port="%d"})`, sp), float64(tr.totalReq+tr.totalResp))
	p.expectQuery(t, fmt.Sprintf(`sum by (service_port) (ebpf_net_obs_bytes_sent_total{service_port="%d",direction="active"})`, sp), float64(tr.totalReq))
	p.expectQuery(t, fmt.Sprintf(`sum by (service_port) (ebpf_net_obs_bytes_received_total{service_port="%d",direction="passive"})`, sp), float64(tr.totalReq))
	p.expectQuery(t, fmt.Sprintf(`sum by (service_port) (ebpf_net_obs_connections_opened_total{service_port="%d"})`, sp), float64(2*tr.conns))
	p.expectQuery(t, fmt.Sprintf(`sum by (service_port) (ebpf_net_obs_connections_closed_total{service_port="%d"})`, sp), float64(2*tr.conns))
	p.expectQuery(t, fmt.Sprintf(`sum by (service_port) (ebpf_net_obs_connections_active{service_port="%d"})`, sp), 0)
	t.Logf("Prometheus 2 scrape matched %d connections (%d+%d bytes) within %s", tr.conns, tr.totalReq, tr.totalResp, time.Since(t0).Round(time.Millisecond))
}

// TestPromtoolChecksRealScrape lints the observer's real /metrics output,
// with connections and rollups in it, with promtool; any complaint fails.
func TestPromtoolChecksRealScrape(t *testing.T) {
	r := start(t, nil)
	promtool := needBinary(t, "promtool", "apt-get install -y prometheus (make deps-test does)")
	tr := makeTraffic(t, 1)
	var body []byte
	eventually(t, 10*time.Second, "connection and rollup series in /metrics", func() (bool, string) {
		resp, err := http.Get(r.url + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		want := fmt.Sprintf(`src_port="%d"`, tr.clientPort[0])
		return bytes.Contains(body, []byte(want)) && bytes.Contains(body, []byte("ebpf_net_obs_rtt_seconds_bucket")), "missing " + want
	})
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics on a real scrape (%d bytes): %v\n%s", len(body), err, out)
	}
}
