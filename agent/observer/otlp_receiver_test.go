package observer

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/config"
)

// prometheus3 is where agent/export/otlp/testdata/get-receiver.sh caches
// the Prometheus 3 build.
func prometheus3() string {
	if p := os.Getenv("EBPF_NET_OBS_PROMETHEUS3"); p != "" {
		return p
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "ebpf-net-obs", "bin", "prometheus3")
}

// TestOTLPReachesPrometheus3: the in-process observer, built by Setup with
// --otlp-endpoint set, pushes OTLP/HTTP to a real Prometheus 3 OTLP
// receiver; PromQL there must return the byte and connection counts the
// test's own sockets measured, under the same names /metrics uses.
func TestOTLPReachesPrometheus3(t *testing.T) {
	bin := needBinary(t, prometheus3(), "build it once with agent/export/otlp/testdata/get-receiver.sh (Go modules only, cached)")
	promCfg := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(promCfg, []byte("global:\n  evaluation_interval: 1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPrometheus(t, bin, "--config.file="+promCfg, "--web.enable-otlp-receiver")
	// Started after Prometheus, so stopped before it: the final push on
	// stop must reach it too (a failure would log a warning). start runs
	// Setup, as the binary does with --otlp-endpoint.
	start(t, func(c *config.Config) {
		c.OTLPEndpoint, c.OTLPInterval = p.url+"/api/v1/otlp", 500*time.Millisecond
	})

	tr := makeTraffic(t, 3)
	t0 := time.Now()
	sp := tr.serverPort
	sum := func(metric, extra string) string {
		return fmt.Sprintf(`sum by (service_port) (%s{job="ebpf-net-obs",service_port="%d"%s})`, metric, sp, extra)
	}
	// Client and server are both on this host: the client (active) rollup
	// sent the requests, the server (passive) rollup the responses.
	p.expectQuery(t, sum("ebpf_net_obs_bytes_sent_total", ""), float64(tr.totalReq+tr.totalResp))
	p.expectQuery(t, sum("ebpf_net_obs_bytes_sent_total", `,direction="active"`), float64(tr.totalReq))
	p.expectQuery(t, sum("ebpf_net_obs_bytes_received_total", `,direction="passive"`), float64(tr.totalReq))
	p.expectQuery(t, sum("ebpf_net_obs_bytes_sent_total", `,direction="passive"`), float64(tr.totalResp))
	p.expectQuery(t, sum("ebpf_net_obs_bytes_received_total", `,direction="active"`), float64(tr.totalResp))
	p.expectQuery(t, sum("ebpf_net_obs_connections_opened_total", ""), float64(2*tr.conns))
	p.expectQuery(t, sum("ebpf_net_obs_connections_closed_total", ""), float64(2*tr.conns))
	p.expectQuery(t, sum("ebpf_net_obs_connections_failed_total", ""), 0)
	p.expectQuery(t, sum("ebpf_net_obs_connections_active", ""), 0)
	p.expectQuery(t, sum("ebpf_net_obs_connection_duration_seconds_count", ""), float64(2*tr.conns))
	p.expectQuery(t, `count(target_info{job="ebpf-net-obs",host_name!=""})`, 1)
	t.Logf("Prometheus 3 OTLP receiver matched %d connections (%d+%d bytes) within %s", tr.conns, tr.totalReq, tr.totalResp, time.Since(t0).Round(time.Millisecond))
}
