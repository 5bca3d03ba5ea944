package otlp

import (
	"context"
	"math"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/conntrack"
)

// ScopeName is the instrumentation scope of every exported metric.
const ScopeName = "github.com/ebpf-net-obs/ebpf-net-obs/agent/export/otlp"

// A metric's OTLP name is its Prometheus name without _total: Prometheus'
// OTLP translation appends _total to monotonic sums (and no unit suffix, as
// the unit word is already in the name), so both paths give one name.
type sumSpec struct {
	name, desc, unit string
	kind             string // value of the "kind" attribute, "" for none
	get              func(*conntrack.Rollup) uint64
}

var sums = []sumSpec{
	{"ebpf_net_obs_connections_opened", "TCP connections opened (connect() started, or accepted).", "{connection}", "", func(r *conntrack.Rollup) uint64 { return r.Opened }},
	{"ebpf_net_obs_connections_closed", "TCP connections closed, failed connects included.", "{connection}", "", func(r *conntrack.Rollup) uint64 { return r.Closed }},
	{"ebpf_net_obs_connections_failed", "Connection attempts that failed before ESTABLISHED (SYN_SENT to CLOSE).", "{connection}", "", func(r *conntrack.Rollup) uint64 { return r.Failed }},
	{"ebpf_net_obs_bytes_sent", "Application payload bytes sent.", "By", "", func(r *conntrack.Rollup) uint64 { return r.BytesSent }},
	{"ebpf_net_obs_bytes_received", "Application payload bytes received.", "By", "", func(r *conntrack.Rollup) uint64 { return r.BytesReceived }},
	{"ebpf_net_obs_retransmits", "Segments retransmitted.", "{segment}", "", func(r *conntrack.Rollup) uint64 { return r.Retransmits }},
	{"ebpf_net_obs_resets", "Connections that sent or received a reset.", "{connection}", "received", func(r *conntrack.Rollup) uint64 { return r.ResetsRx }},
	{"ebpf_net_obs_resets", "", "", "sent", func(r *conntrack.Rollup) uint64 { return r.ResetsTx }},
}

// producer turns the rollups into OTLP data points at each collection.
type producer struct {
	table *conntrack.Table
	now   func() time.Time
	start time.Time // every rollup counts from zero since then
}

func newProducer(t *conntrack.Table, now func() time.Time) *producer {
	return &producer{table: t, now: now, start: now()}
}

func attrs(r *conntrack.Rollup, extra ...attribute.KeyValue) attribute.Set {
	kv := make([]attribute.KeyValue, 0, len(conntrack.RollupLabelNames)+len(extra))
	for i, v := range r.Values() {
		kv = append(kv, attribute.String(conntrack.RollupLabelNames[i], v))
	}
	return attribute.NewSet(append(kv, extra...)...)
}

func histPoint(h *conntrack.Histogram, set attribute.Set, start, now time.Time) metricdata.HistogramDataPoint[float64] {
	return metricdata.HistogramDataPoint[float64]{
		Attributes: set, StartTime: start, Time: now,
		Count: h.Count, Sum: h.Sum,
		Bounds: slices.Clone(h.Bounds), BucketCounts: slices.Clone(h.Counts),
	}
}

func clamp(v uint64) int64 { return int64(min(v, math.MaxInt64)) }

// Produce snapshots every rollup under the table's lock; the points own
// their data, so the export runs without it.
func (p *producer) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	now := p.now()
	points := make([][]metricdata.DataPoint[int64], len(sums))
	var active []metricdata.DataPoint[int64]
	var rtt, durat []metricdata.HistogramDataPoint[float64]
	p.table.EachRollup(func(r *conntrack.Rollup) {
		set := attrs(r)
		for i, s := range sums {
			ps := set
			if s.kind != "" {
				ps = attrs(r, attribute.String("kind", s.kind))
			}
			points[i] = append(points[i], metricdata.DataPoint[int64]{Attributes: ps, StartTime: p.start, Time: now, Value: clamp(s.get(r))})
		}
		active = append(active, metricdata.DataPoint[int64]{Attributes: set, Time: now, Value: r.Active})
		rtt = append(rtt, histPoint(&r.RTT, set, p.start, now))
		durat = append(durat, histPoint(&r.Duration, set, p.start, now))
	})

	var ms []metricdata.Metrics
	for i := 0; i < len(sums); i++ {
		s := sums[i]
		pts := points[i]
		// Specs sharing a name (resets by kind) are one metric.
		for i+1 < len(sums) && sums[i+1].name == s.name {
			i++
			pts = append(pts, points[i]...)
		}
		ms = append(ms, metricdata.Metrics{Name: s.name, Description: s.desc, Unit: s.unit,
			Data: metricdata.Sum[int64]{DataPoints: pts, Temporality: metricdata.CumulativeTemporality, IsMonotonic: true}})
	}
	ms = append(ms,
		metricdata.Metrics{Name: "ebpf_net_obs_connections_active", Description: "TCP connections open now.", Unit: "{connection}",
			Data: metricdata.Gauge[int64]{DataPoints: active}},
		metricdata.Metrics{Name: "ebpf_net_obs_rtt_seconds", Description: "Per-ACK RTT samples kept after sampling (log2 buckets from the kernel).", Unit: "s",
			Data: metricdata.Histogram[float64]{DataPoints: rtt, Temporality: metricdata.CumulativeTemporality}},
		metricdata.Metrics{Name: "ebpf_net_obs_connection_duration_seconds", Description: "Lifetime of closed connections.", Unit: "s",
			Data: metricdata.Histogram[float64]{DataPoints: durat, Temporality: metricdata.CumulativeTemporality}},
	)
	return []metricdata.ScopeMetrics{{Scope: instrumentation.Scope{Name: ScopeName}, Metrics: ms}}, nil
}
