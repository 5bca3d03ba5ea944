// Package config is the observer's single source of configuration: one
// struct with defaults, filled from a YAML file and then from flags (flags
// win), validated once.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"gopkg.in/yaml.v3"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/runstats"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/cliflag"
)

// Config is every setting of bin/ebpf-net-obs. The yaml key of each field is
// also its flag name.
type Config struct {
	ListenAddress       string        `yaml:"listen-address"`        // serves /metrics and /healthz
	WebConfigFile       string        `yaml:"web.config.file"`       // exporter-toolkit web config: TLS, client certs, basic auth ("" = plain HTTP)
	Transport           string        `yaml:"transport"`             // ringbuf | perf
	MapType             string        `yaml:"map-type"`              // hash | lru_hash | percpu_hash | lru_percpu_hash
	SampleRate          uint32        `yaml:"sample-rate"`           // keep the RTT samples of 1 in N connections (1 = all)
	MaxConnections      uint32        `yaml:"max-connections"`       // capacity of the kernel connection map
	FlushInterval       time.Duration `yaml:"flush-interval"`        // how often open connections are read from the kernel
	CloseRetention      time.Duration `yaml:"close-retention"`       // how long a closed connection's series stay visible
	MaxConnectionSeries int           `yaml:"max-connection-series"` // cap on per-connection series; the rest counts in rollups
	RingbufBytes        uint32        `yaml:"ringbuf-bytes"`         // ring buffer size
	PerfBufferBytes     int           `yaml:"perf-buffer-bytes"`     // perf buffer size per CPU
	BPFStats            runstats.Mode `yaml:"bpf-stats"`             // kernel BPF run-time statistics: off | on | sampled
	BPFStatsWindow      time.Duration `yaml:"bpf-stats-window"`      // sampled: statistics on for this long ...
	BPFStatsPeriod      time.Duration `yaml:"bpf-stats-period"`      // ... once in every period
	OTLPEndpoint        string        `yaml:"otlp-endpoint"`         // push OTLP metrics here when set
	OTLPInterval        time.Duration `yaml:"otlp-interval"`         // OTLP push period
	CgroupPath          string        `yaml:"cgroup-path"`           // cgroup v2 dir for sock_ops ("" = the mount)
	PodLogDir           string        `yaml:"pod-log-dir"`           // kubelet's /var/log/pods
	Kubeconfig          string        `yaml:"kubeconfig"`            // "" = $KUBECONFIG or in-cluster
	NodeName            string        `yaml:"node-name"`             // "" = $NODE_NAME or hostname
	LogLevel            string        `yaml:"log-level"`             // debug | info | warn | error
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		ListenAddress:       ":9095",
		Transport:           "ringbuf",
		MapType:             "hash",
		SampleRate:          1,
		MaxConnections:      65536,
		FlushInterval:       time.Second,
		CloseRetention:      30 * time.Second,
		MaxConnectionSeries: 10000,
		RingbufBytes:        4 << 20,
		PerfBufferBytes:     1 << 20,
		BPFStats:            runstats.Off, // a machine-wide switch: opt-in only
		BPFStatsWindow:      time.Second,
		BPFStatsPeriod:      30 * time.Second,
		OTLPInterval:        10 * time.Second,
		PodLogDir:           "/var/log/pods",
		LogLevel:            "info",
	}
}

// Transports and MapTypes are the accepted values.
var (
	Transports = []string{"ringbuf", "perf"}
	MapTypes   = []string{"hash", "lru_hash", "percpu_hash", "lru_percpu_hash"}
	LogLevels  = []string{"debug", "info", "warn", "error"}
)

// ErrHelp is returned when -h/--help was asked for.
var ErrHelp = flag.ErrHelp

// Load builds the configuration from args (without the program name):
// defaults, then the --config file, then flags.
func Load(args []string, usage io.Writer) (Config, error) {
	c := Default()
	fs := flag.NewFlagSet("ebpf-net-obs", flag.ContinueOnError)
	// Quiet while parsing: a bad flag is the caller's one-line error, not
	// the flag package's echo of it plus the whole settings list.
	fs.SetOutput(io.Discard)
	file := fs.String("config", "", "YAML file with any of the settings below (flags win)")
	c.bind(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			cliflag.Help(fs, usage)
			return c, ErrHelp
		}
		return c, fmt.Errorf("%s (see --help)", flatten(err))
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (all settings are --flags; see --help)", fs.Arg(0))
	}
	if *file != "" {
		fromFile := Default()
		if err := fromFile.readYAML(*file); err != nil {
			return c, err
		}
		// Re-apply the flags given on the command line over the file by
		// parsing them again: flag.Func values print as "", so copying
		// Value.String() across would drop --sample-rate and friends.
		fs2 := flag.NewFlagSet("", flag.ContinueOnError)
		fs2.SetOutput(io.Discard)
		fs2.String("config", "", "")
		fromFile.bind(fs2)
		if err := fs2.Parse(args); err != nil {
			return c, fmt.Errorf("%s (see --help)", flatten(err))
		}
		c = fromFile
	}
	return c, c.Validate()
}

func (c *Config) bind(fs *flag.FlagSet) {
	fs.StringVar(&c.ListenAddress, "listen-address", c.ListenAddress, "address serving /metrics and /healthz")
	fs.StringVar(&c.WebConfigFile, "web.config.file", c.WebConfigFile, "Prometheus exporter-toolkit web config file (TLS, client certificates, basic auth) for /metrics and /healthz; empty serves plain HTTP")
	fs.StringVar(&c.Transport, "transport", c.Transport, "event transport: ringbuf or perf")
	fs.StringVar(&c.MapType, "map-type", c.MapType, "connection map type: hash, lru_hash, percpu_hash or lru_percpu_hash")
	fs.Func("sample-rate", fmt.Sprintf("keep the per-ACK RTT samples of 1 in N connections; lifecycle, bytes and totals stay exact (default %d)", c.SampleRate), func(s string) error {
		return parseUint32(s, &c.SampleRate)
	})
	fs.Func("max-connections", fmt.Sprintf("capacity of the kernel connection map (default %d)", c.MaxConnections), func(s string) error {
		return parseUint32(s, &c.MaxConnections)
	})
	fs.DurationVar(&c.FlushInterval, "flush-interval", c.FlushInterval, "how often open connections are read from the kernel")
	fs.DurationVar(&c.CloseRetention, "close-retention", c.CloseRetention, "how long a closed connection's series stay visible")
	fs.IntVar(&c.MaxConnectionSeries, "max-connection-series", c.MaxConnectionSeries, "cap on per-connection series (the rest still counts in rollups)")
	fs.Func("ringbuf-bytes", fmt.Sprintf("ring buffer size, a power of two (default %d)", c.RingbufBytes), func(s string) error {
		return parseUint32(s, &c.RingbufBytes)
	})
	fs.IntVar(&c.PerfBufferBytes, "perf-buffer-bytes", c.PerfBufferBytes, "perf buffer size per CPU")
	fs.Var(&c.BPFStats, "bpf-stats", "the kernel's BPF run-time statistics, a machine-wide switch (two clock reads per run of every BPF program while on): off (never switched; run times are still read if kernel.bpf_stats_enabled=1), on (exact), sampled (on for --bpf-stats-window in every --bpf-stats-period, totals scaled up)")
	fs.DurationVar(&c.BPFStatsWindow, "bpf-stats-window", c.BPFStatsWindow, "with --bpf-stats=sampled: how long the statistics stay on in each period")
	fs.DurationVar(&c.BPFStatsPeriod, "bpf-stats-period", c.BPFStatsPeriod, "with --bpf-stats=sampled: one window in every period, at a random offset")
	fs.StringVar(&c.OTLPEndpoint, "otlp-endpoint", c.OTLPEndpoint, "push OTLP/HTTP metrics to this URL (e.g. http://collector:4318)")
	fs.DurationVar(&c.OTLPInterval, "otlp-interval", c.OTLPInterval, "OTLP push period")
	fs.StringVar(&c.CgroupPath, "cgroup-path", c.CgroupPath, "cgroup v2 directory the sock_ops program attaches to (default: the cgroup2 mount)")
	fs.StringVar(&c.PodLogDir, "pod-log-dir", c.PodLogDir, "kubelet's pod log directory, used for pod names without API access")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig for pod metadata (default $KUBECONFIG or in-cluster)")
	fs.StringVar(&c.NodeName, "node-name", c.NodeName, "this node's name for the pod informer (default $NODE_NAME or hostname)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
}

func parseUint32(s string, dst *uint32) error {
	var v uint64
	if _, err := fmt.Sscanf(s, "%d", &v); err != nil || v > 1<<32-1 || fmt.Sprint(v) != strings.TrimSpace(s) {
		return fmt.Errorf("%q is not a non-negative integer", s)
	}
	*dst = uint32(v)
	return nil
}

func (c *Config) readYAML(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		// yaml's messages span lines; errors here are one line.
		return fmt.Errorf("config %s: %s (keys are the flag names; see configs/config.yaml.example)", path, strings.Join(strings.Fields(err.Error()), " "))
	}
	return nil
}

// Validate checks every setting once; each error names the setting and the fix.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: "+format, append([]any{key}, args...)...))
	}
	if _, _, err := net.SplitHostPort(c.ListenAddress); err != nil {
		bad("listen-address", "%q is not host:port (e.g. :9095)", c.ListenAddress)
	}
	if c.WebConfigFile != "" {
		if err := validateWebConfig(c.WebConfigFile); err != nil {
			bad("web.config.file", "%v", err)
		}
	}
	if !oneOf(c.Transport, Transports) {
		bad("transport", "%q is not one of %s", c.Transport, strings.Join(Transports, ", "))
	}
	if !oneOf(c.MapType, MapTypes) {
		bad("map-type", "%q is not one of %s", c.MapType, strings.Join(MapTypes, ", "))
	}
	if c.SampleRate < 1 {
		bad("sample-rate", "must be at least 1 (1 keeps every sample)")
	}
	if c.MaxConnections < 64 {
		bad("max-connections", "%d is too small (at least 64)", c.MaxConnections)
	}
	if c.FlushInterval < 10*time.Millisecond {
		bad("flush-interval", "%s is too short (at least 10ms)", c.FlushInterval)
	}
	if c.CloseRetention < 30*time.Second {
		bad("close-retention", "%s is shorter than the 30s a closed connection must stay visible", c.CloseRetention)
	}
	if c.MaxConnectionSeries < 0 {
		bad("max-connection-series", "must not be negative")
	}
	if c.RingbufBytes < 4096 || c.RingbufBytes&(c.RingbufBytes-1) != 0 {
		bad("ringbuf-bytes", "%d must be a power of two of at least 4096", c.RingbufBytes)
	}
	if c.PerfBufferBytes < 4096 {
		bad("perf-buffer-bytes", "%d must be at least 4096", c.PerfBufferBytes)
	}
	if m, err := runstats.ParseMode(string(c.BPFStats)); err != nil {
		bad("bpf-stats", "%q: %v", c.BPFStats, err)
	} else {
		c.BPFStats = m // a YAML file may say true or false
	}
	if c.BPFStats == runstats.Sampled && (c.BPFStatsWindow < 10*time.Millisecond || c.BPFStatsWindow >= c.BPFStatsPeriod) {
		bad("bpf-stats-window", "%s must be at least 10ms and shorter than --bpf-stats-period (%s)", c.BPFStatsWindow, c.BPFStatsPeriod)
	}
	if c.OTLPEndpoint != "" && !strings.HasPrefix(c.OTLPEndpoint, "http://") && !strings.HasPrefix(c.OTLPEndpoint, "https://") {
		bad("otlp-endpoint", "%q must be an http:// or https:// URL", c.OTLPEndpoint)
	}
	if c.OTLPInterval < 100*time.Millisecond {
		bad("otlp-interval", "%s is too short (at least 100ms)", c.OTLPInterval)
	}
	if !oneOf(c.LogLevel, LogLevels) {
		bad("log-level", "%q is not one of %s", c.LogLevel, strings.Join(LogLevels, ", "))
	}
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}

// webConfigDocs is where the web config format is described.
const webConfigDocs = "https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md"

// validateWebConfig checks the web config file the way serving it will
// read it (YAML, users' bcrypt hashes, the certificate and key files), so a
// mistake stops the observer at start, not at the first scrape.
func validateWebConfig(path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%q: %s (point it at an existing web config file, or leave it empty for plain HTTP)", path, strings.Join(strings.Fields(err.Error()), " "))
	}
	if err := web.Validate(path); err != nil {
		return fmt.Errorf("%q: %s (fix the file: the format is the Prometheus exporter-toolkit web config, %s)", path, strings.Join(strings.Fields(err.Error()), " "), webConfigDocs)
	}
	return nil
}

// flatten is err's message on one line: the flag package quotes nothing,
// so a newline inside an argument would split the message.
func flatten(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

func oneOf(s string, set []string) bool {
	for _, v := range set {
		if s == v {
			return true
		}
	}
	return false
}
