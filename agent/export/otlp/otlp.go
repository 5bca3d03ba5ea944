// Package otlp pushes the observer's rollups as OTLP/HTTP metrics. One
// metric.Producer builds every data point from the connection table at
// collection time (cumulative, exact, no SDK instruments in between), and a
// PeriodicReader posts them every interval.
package otlp

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/conntrack"
)

// MetricsPath is what the exporter appends to --otlp-endpoint, as the
// OTLP/HTTP specification does for OTEL_EXPORTER_OTLP_ENDPOINT.
const MetricsPath = "/v1/metrics"

// Options configure Start.
type Options struct {
	Endpoint string           // http(s)://host:port[/base path]; MetricsPath is appended
	Interval time.Duration    // push period
	Table    *conntrack.Table // where the rollups live
	NodeName string           // k8s.node.name and service.instance.id when set
	Version  string           // service.version
	TLS      *tls.Config      // for https endpoints; nil = the system's roots
}

// MetricsURL returns the URL the exporter posts to, or a one-line error
// naming what is wrong with endpoint.
func MetricsURL(endpoint string) (*url.URL, error) {
	u, err := url.Parse(endpoint)
	switch {
	case err != nil:
		return nil, fmt.Errorf("--otlp-endpoint %q: not a URL (e.g. http://collector:4318)", endpoint)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("--otlp-endpoint %q: scheme must be http or https (e.g. http://collector:4318)", endpoint)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("--otlp-endpoint %q: no host (e.g. http://collector:4318)", endpoint)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("--otlp-endpoint %q: no query or fragment allowed", endpoint)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if !strings.HasSuffix(u.Path, MetricsPath) {
		u.Path += MetricsPath
	}
	return u, nil
}

// Start pushes the rollups of o.Table every o.Interval until stop is called;
// stop pushes once more, so the last figures reach the collector. A
// collector that cannot be reached is logged once per failure streak.
func Start(ctx context.Context, o Options, log *slog.Logger) (stop func(context.Context) error, err error) {
	u, err := MetricsURL(o.Endpoint)
	if err != nil {
		return nil, err
	}
	if o.Interval <= 0 {
		return nil, fmt.Errorf("--otlp-interval %s: must be positive", o.Interval)
	}
	// One push may retry until the next one is due, within 30s.
	timeout := min(max(o.Interval, time.Second), 30*time.Second)
	opts := []otlpmetrichttp.Option{
		otlpmetrichttp.WithEndpoint(u.Host),
		otlpmetrichttp.WithURLPath(u.Path),
		otlpmetrichttp.WithTimeout(timeout),
		otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{
			Enabled: true, InitialInterval: 250 * time.Millisecond, MaxInterval: 5 * time.Second, MaxElapsedTime: timeout,
		}),
	}
	if u.Scheme == "http" {
		opts = append(opts, otlpmetrichttp.WithInsecure())
	} else if o.TLS != nil {
		opts = append(opts, otlpmetrichttp.WithTLSClientConfig(o.TLS))
	}
	exp, err := otlpmetrichttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter for %s: %w", u, err)
	}
	reader := sdkmetric.NewPeriodicReader(&streakExporter{Exporter: exp, log: log, url: u.String()},
		sdkmetric.WithInterval(o.Interval), sdkmetric.WithTimeout(timeout),
		sdkmetric.WithProducer(newProducer(o.Table, time.Now)))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithResource(Resource(o.NodeName, o.Version)))
	log.Info("pushing OTLP metrics", "url", u.String(), "interval", o.Interval)
	return mp.Shutdown, nil
}

// Resource describes this observer: service.name=ebpf-net-obs, the host,
// and the Kubernetes node when known. service.instance.id keeps the series
// of two nodes apart in a backend such as Prometheus, which turns it into
// the instance label.
func Resource(nodeName, version string) *resource.Resource {
	host, _ := os.Hostname()
	attrs := []attribute.KeyValue{
		attribute.String("service.name", "ebpf-net-obs"),
		attribute.String("host.name", host),
	}
	if version != "" {
		attrs = append(attrs, attribute.String("service.version", version))
	}
	instance := host
	if nodeName != "" {
		attrs = append(attrs, attribute.String("k8s.node.name", nodeName))
		instance = nodeName
	}
	attrs = append(attrs, attribute.String("service.instance.id", instance))
	return resource.NewSchemaless(attrs...)
}

// streakExporter logs the first failure of a streak and the recovery, and
// keeps failures away from the SDK's global error handler, which would log
// every one of them.
type streakExporter struct {
	sdkmetric.Exporter
	log     *slog.Logger
	url     string
	failing atomic.Bool
}

func (e *streakExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	err := e.Exporter.Export(ctx, rm)
	switch {
	case err != nil && !e.failing.Swap(true):
		e.log.Warn("OTLP push failed; retrying every interval, logged again only after a success", "url", e.url, "err", err)
	case err == nil && e.failing.Swap(false):
		e.log.Info("OTLP push recovered", "url", e.url)
	}
	return nil
}
