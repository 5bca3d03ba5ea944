// Package prom exports the observer as Prometheus metrics, node_exporter
// style: one collector per concern, const metrics built from a snapshot at
// scrape time, a registry of its own, no package state.
package prom

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/conntrack"
)

const ns = "ebpf_net_obs"

// ConnCollector exports one series set per connection (names fixed by the project's contract, docs/metrics.md).
type ConnCollector struct {
	table                        *conntrack.Table
	sent, received, retrans, rtt *prometheus.Desc
}

// NewConnCollector exports the connections of t.
func NewConnCollector(t *conntrack.Table) *ConnCollector {
	l := conntrack.ConnLabelNames
	return &ConnCollector{
		table:    t,
		sent:     prometheus.NewDesc(ns+"_connection_bytes_sent_total", "Application payload bytes this end sent on the connection (exact at close; acknowledged bytes while open).", l, nil),
		received: prometheus.NewDesc(ns+"_connection_bytes_received_total", "Application payload bytes this end received on the connection.", l, nil),
		retrans:  prometheus.NewDesc(ns+"_connection_retransmits_total", "Segments this end retransmitted on the connection.", l, nil),
		rtt:      prometheus.NewDesc(ns+"_connection_srtt_seconds", "Smoothed round-trip time of the connection as the kernel estimates it.", l, nil),
	}
}

func (c *ConnCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sent
	ch <- c.received
	ch <- c.retrans
	ch <- c.rtt
}

func (c *ConnCollector) Collect(ch chan<- prometheus.Metric) {
	// Build under the table lock, send after: a slow scraper must not
	// stall the event reader.
	var ms []prometheus.Metric
	// A 4-tuple can come back within the retention (a client port reused
	// after TIME_WAIT): the newest connection owns the series.
	seen := map[string]struct{}{}
	c.table.Each(func(conn *conntrack.Conn) {
		l := conn.Labels()
		id := strings.Join(l, "\x00")
		if _, dup := seen[id]; dup {
			return
		}
		seen[id] = struct{}{}
		ms = append(ms,
			prometheus.MustNewConstMetric(c.sent, prometheus.CounterValue, float64(conn.BytesSent), l...),
			prometheus.MustNewConstMetric(c.received, prometheus.CounterValue, float64(conn.BytesReceived), l...),
			prometheus.MustNewConstMetric(c.retrans, prometheus.CounterValue, float64(conn.Retransmits), l...),
		)
		if conn.SRTT > 0 {
			ms = append(ms, prometheus.MustNewConstMetric(c.rtt, prometheus.GaugeValue, conn.SRTT.Seconds(), l...))
		}
	})
	for _, m := range ms {
		ch <- m
	}
}
