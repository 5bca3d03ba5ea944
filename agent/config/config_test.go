package config

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/runstats"
)

func oneLine(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans lines: %q", err)
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "observer.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsValidate(t *testing.T) {
	d := Default()
	if err := d.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	c, err := Load(nil, io.Discard)
	if err != nil {
		t.Fatalf("Load(no args): %v", err)
	}
	if c != d {
		t.Errorf("Load(no args) = %+v, want the defaults %+v", c, d)
	}
	if d.CloseRetention != 30*time.Second || d.Transport != "ringbuf" || d.SampleRate != 1 {
		t.Errorf("defaults changed: %+v", d)
	}
}

// The kernel's BPF statistics are a machine-wide switch: the observer
// leaves them alone unless asked (--bpf-stats=on or sampled).
func TestBPFStatsOffByDefault(t *testing.T) {
	if d := Default(); d.BPFStats != runstats.Off {
		t.Errorf("default --bpf-stats = %q, want off", d.BPFStats)
	}
	for _, tc := range []struct {
		args []string
		want runstats.Mode
	}{
		{nil, runstats.Off},
		{[]string{"--bpf-stats=on"}, runstats.On},
		{[]string{"--bpf-stats", "sampled"}, runstats.Sampled},
		{[]string{"--bpf-stats=off"}, runstats.Off},
		{[]string{"--bpf-stats=sampled", "--bpf-stats-window=100ms", "--bpf-stats-period=1s"}, runstats.Sampled},
	} {
		c, err := Load(tc.args, io.Discard)
		if err != nil || c.BPFStats != tc.want {
			t.Errorf("%v: --bpf-stats %q, err %v; want %q", tc.args, c.BPFStats, err, tc.want)
		}
	}
	var usage bytes.Buffer
	if _, err := Load([]string{"--help"}, &usage); !errors.Is(err, ErrHelp) {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(usage.String(), "\n  -") {
		if strings.HasPrefix(line, "bpf-stats ") && !strings.Contains(line, "(default off)") {
			t.Errorf("--help does not say the default is off:\n%s", line)
		}
	}
}

func TestBadValuesNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--transport", "kafka"}, "--transport"},
		{[]string{"--map-type", "array"}, "--map-type"},
		{[]string{"--sample-rate", "0"}, "--sample-rate"},
		{[]string{"--sample-rate", "-1"}, "sample-rate"},
		{[]string{"--sample-rate", "abc"}, "sample-rate"},
		{[]string{"--max-connections", "10"}, "--max-connections"},
		{[]string{"--ringbuf-bytes", "5000"}, "--ringbuf-bytes"},
		{[]string{"--ringbuf-bytes", "2048"}, "--ringbuf-bytes"},
		{[]string{"--close-retention", "10s"}, "--close-retention"},
		{[]string{"--flush-interval", "1ms"}, "--flush-interval"},
		{[]string{"--listen-address", "nonsense"}, "--listen-address"},
		{[]string{"--otlp-endpoint", "collector:4318"}, "--otlp-endpoint"},
		{[]string{"--log-level", "verbose"}, "--log-level"},
		{[]string{"--max-connection-series", "-1"}, "--max-connection-series"},
		{[]string{"--perf-buffer-bytes", "100"}, "--perf-buffer-bytes"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"stray"}, "stray"},
	} {
		_, err := Load(tc.args, io.Discard)
		if err == nil {
			t.Errorf("%q accepted", tc.args)
			continue
		}
		if !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%q: error %q does not name %s", tc.args, err, tc.flag)
		}
		oneLine(t, err)
	}
}

func TestSeveralErrorsAtOnce(t *testing.T) {
	_, err := Load([]string{"--transport", "x", "--close-retention", "1s"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--transport") || !strings.Contains(err.Error(), "--close-retention") {
		t.Errorf("want both settings named, got %v", err)
	}
	oneLine(t, err)
}

// Every yaml key is a flag of the same name and every flag (but --config)
// is a yaml key.
func TestYAMLKeysAreFlagNames(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	c.bind(fs)
	flags := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { flags[f.Name] = true })
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		key := typ.Field(i).Tag.Get("yaml")
		if key == "" {
			t.Errorf("field %s has no yaml key", typ.Field(i).Name)
			continue
		}
		if !flags[key] {
			t.Errorf("yaml key %q has no flag", key)
		}
		delete(flags, key)
	}
	for f := range flags {
		t.Errorf("flag --%s has no yaml key", f)
	}
}

func TestFile(t *testing.T) {
	p := writeFile(t, `
transport: perf
map-type: lru_percpu_hash
sample-rate: 10
max-connections: 1024
flush-interval: 250ms
close-retention: 45s
ringbuf-bytes: 8192
bpf-stats: false
otlp-endpoint: https://collector:4318
log-level: debug
`)
	c, err := Load([]string{"--config", p}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Transport, want.MapType, want.SampleRate, want.MaxConnections = "perf", "lru_percpu_hash", 10, 1024
	want.FlushInterval, want.CloseRetention, want.RingbufBytes = 250*time.Millisecond, 45*time.Second, 8192
	want.BPFStats, want.OTLPEndpoint, want.LogLevel = runstats.Off, "https://collector:4318", "debug"
	if c != want {
		t.Errorf("from file\n got %+v\nwant %+v", c, want)
	}
}

func TestEmptyFileIsDefaults(t *testing.T) {
	c, err := Load([]string{"--config", writeFile(t, "")}, io.Discard)
	if err != nil || c != Default() {
		t.Errorf("empty file: %+v, %v", c, err)
	}
}

func TestFileErrors(t *testing.T) {
	p := writeFile(t, "transport: perf\nsample_rate: 10\n")
	_, err := Load([]string{"--config", p}, io.Discard)
	if err == nil {
		t.Fatal("unknown key accepted")
	}
	if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "sample_rate") {
		t.Errorf("error %q names neither the file nor the key", err)
	}
	oneLine(t, err)

	_, err = Load([]string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}

	_, err = Load([]string{"--config", writeFile(t, "close-retention: 5s\n")}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--close-retention") {
		t.Errorf("bad value in the file: %v", err)
	}
}

func TestFlagsOverrideFile(t *testing.T) {
	p := writeFile(t, `
transport: perf
sample-rate: 10
max-connections: 1024
ringbuf-bytes: 8192
close-retention: 45s
log-level: debug
`)
	// Flags before and after --config alike.
	c, err := Load([]string{"--transport", "ringbuf", "--sample-rate", "5", "--config", p,
		"--max-connections", "2048", "--ringbuf-bytes", "16384", "--close-retention", "1m"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Transport, want.SampleRate, want.MaxConnections, want.RingbufBytes = "ringbuf", 5, 2048, 16384
	want.CloseRetention, want.LogLevel = time.Minute, "debug" // log-level: the file's, no flag given
	if c != want {
		t.Errorf("flags over file\n got %+v\nwant %+v", c, want)
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		var usage bytes.Buffer
		_, err := Load([]string{arg}, &usage)
		if !errors.Is(err, ErrHelp) {
			t.Errorf("%s: err = %v, want ErrHelp", arg, err)
		}
		for _, f := range []string{"-config", "-transport", "-sample-rate", "-close-retention"} {
			if !strings.Contains(usage.String(), f) {
				t.Errorf("%s: usage does not mention %s", arg, f)
			}
		}
	}
}

// A bad flag is the caller's one error line: the flag package neither
// echoes it nor prints the settings list.
func TestBadFlagIsOneLine(t *testing.T) {
	for _, args := range [][]string{{"--bpf-stats=maybe"}, {"--sample-rate", "abc"}, {"--nope"}} {
		var out bytes.Buffer
		_, err := Load(args, &out)
		if err == nil || strings.Contains(err.Error(), "\n") || out.Len() != 0 {
			t.Errorf("%v: err %q, and %d bytes written besides", args, err, out.Len())
		}
	}
	if _, err := Load([]string{"--bpf-stats=maybe"}, io.Discard); err == nil || !strings.Contains(err.Error(), "want off, on or sampled") {
		t.Errorf("bad --bpf-stats: %v does not list the accepted values", err)
	}
}
