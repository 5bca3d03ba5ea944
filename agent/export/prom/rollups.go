package prom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/conntrack"
)

// RollupCollector exports totals by workload and remote endpoint; they stay
// after the connections themselves are folded away.
type RollupCollector struct {
	table                                       *conntrack.Table
	opened, closed, failed, active              *prometheus.Desc
	sent, received, retrans, resets, rtt, durat *prometheus.Desc
}

// NewRollupCollector exports the rollups of t.
func NewRollupCollector(t *conntrack.Table) *RollupCollector {
	l := conntrack.RollupLabelNames
	d := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(ns+"_"+name, help, append(append([]string{}, l...), extra...), nil)
	}
	return &RollupCollector{
		table:    t,
		opened:   d("connections_opened_total", "TCP connections opened (connect() started, or accepted)."),
		closed:   d("connections_closed_total", "TCP connections closed, failed connects included."),
		failed:   d("connections_failed_total", "Connection attempts that failed before ESTABLISHED (SYN_SENT to CLOSE)."),
		active:   d("connections_active", "TCP connections open now."),
		sent:     d("bytes_sent_total", "Application payload bytes sent."),
		received: d("bytes_received_total", "Application payload bytes received."),
		retrans:  d("retransmits_total", "Segments retransmitted."),
		resets:   d("resets_total", "Connections that sent or received a reset.", "kind"),
		rtt:      d("rtt_seconds", "Per-ACK RTT samples kept after sampling (log2 buckets from the kernel)."),
		durat:    d("connection_duration_seconds", "Lifetime of closed connections."),
	}
}

func (c *RollupCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.opened, c.closed, c.failed, c.active, c.sent, c.received, c.retrans, c.resets, c.rtt, c.durat} {
		ch <- d
	}
}

func (c *RollupCollector) Collect(ch chan<- prometheus.Metric) {
	var ms []prometheus.Metric
	counter := func(d *prometheus.Desc, v uint64, l []string) {
		ms = append(ms, prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...))
	}
	c.table.EachRollup(func(r *conntrack.Rollup) {
		l := r.Values()
		counter(c.opened, r.Opened, l)
		counter(c.closed, r.Closed, l)
		counter(c.failed, r.Failed, l)
		ms = append(ms, prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(r.Active), l...))
		counter(c.sent, r.BytesSent, l)
		counter(c.received, r.BytesReceived, l)
		counter(c.retrans, r.Retransmits, l)
		counter(c.resets, r.ResetsRx, append(l[:len(l):len(l)], "received"))
		counter(c.resets, r.ResetsTx, append(l[:len(l):len(l)], "sent"))
		ms = append(ms,
			prometheus.MustNewConstHistogram(c.rtt, r.RTT.Count, r.RTT.Sum, r.RTT.Cumulative(), l...),
			prometheus.MustNewConstHistogram(c.durat, r.Duration.Count, r.Duration.Sum, r.Duration.Cumulative(), l...))
	})
	for _, m := range ms {
		ch <- m
	}
}
