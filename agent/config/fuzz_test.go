package config

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Fuzz targets for the observer's configuration: the YAML file and the
// command line. Whatever comes in, the result is a configuration that
// validates or a one-line error, and a configuration that validates comes
// back unchanged through the YAML file format. Seed corpora are also in
// testdata/fuzz/<target>/; `make fuzz-short` runs each for a few seconds.
//
// The web config file is not opened: a fuzzed path could name anything
// (/dev/zero), so it is pointed into a directory that does not exist,
// which still checks that its error is one line.

// noFile keeps a fuzzed web config path from being read: it becomes one
// name (no separators, so no "..") in a directory that does not exist.
func noFile(t *testing.T, c *Config) {
	if c.WebConfigFile != "" {
		c.WebConfigFile = t.TempDir() + "/absent/" + strings.ReplaceAll(c.WebConfigFile, "/", "_")
	}
}

// roundTrip writes c as a YAML file and reads it back over the defaults.
func roundTrip(t *testing.T, c Config) {
	t.Helper()
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatalf("marshal %+v: %v", c, err)
	}
	p := filepath.Join(t.TempDir(), "rt.yaml")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	back := Default()
	if err := back.readYAML(p); err != nil {
		t.Fatalf("the file written from a valid configuration does not read back: %v\n%s", err, out)
	}
	if err := back.Validate(); err != nil {
		t.Fatalf("the file written from a valid configuration does not validate: %v\n%s", err, out)
	}
	if back != c {
		t.Fatalf("YAML round trip changed the configuration\n got %+v\nwant %+v\nfile:\n%s", back, c, out)
	}
}

func FuzzConfigYAML(f *testing.F) {
	if ex, err := os.ReadFile("../../configs/config.yaml.example"); err == nil {
		f.Add(ex)
	}
	f.Add([]byte(""))
	f.Add([]byte("transport: perf\nsample-rate: 10\nmax-connections: 1024\nringbuf-bytes: 8192\nclose-retention: 45s\nlog-level: debug\n"))
	f.Add([]byte("bpf-stats: sampled\nbpf-stats-window: 500ms\nbpf-stats-period: 1m\n"))
	f.Add([]byte("bpf-stats: true\notlp-endpoint: http://collector:4318\notlp-interval: 2s\n"))
	f.Add([]byte("close-retention: 5s\nsample-rate: 0\n"))
	f.Add([]byte("sample_rate: 10\n"))
	f.Add([]byte("listen-address: [::1]:9095\nmap-type: lru_percpu_hash\nmax-connection-series: -1\n"))
	f.Add([]byte("transport: ringbuf\n---\ntransport: nonsense\n"))
	f.Add([]byte("{transport: perf, flush-interval: 10ms}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "observer.yaml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c := Default()
		if err := c.readYAML(p); err != nil {
			oneLine(t, err)
			return
		}
		noFile(t, &c)
		if err := c.Validate(); err != nil {
			oneLine(t, err)
			if !strings.HasPrefix(err.Error(), "--") {
				t.Errorf("error %q does not start with the setting it is about", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("a valid configuration fails a second validation: %v", err)
		}
		roundTrip(t, c)
	})
}

func FuzzConfigFlags(f *testing.F) {
	// The input is an argument vector, NUL-separated like /proc/<pid>/cmdline.
	for _, args := range []string{
		"",
		"--transport\x00perf\x00--sample-rate=10",
		"--map-type=lru_hash\x00--max-connections\x002048\x00--flush-interval=250ms",
		"--bpf-stats=sampled\x00--bpf-stats-window=2s\x00--bpf-stats-period=1m",
		"--ringbuf-bytes\x0016384\x00--close-retention\x001m\x00--log-level=debug",
		"--sample-rate\x00 7",
		"--sample-rate\x00abc",
		"--bpf-stats=maybe",
		"--nope",
		"-h",
		"stray",
		"--listen-address=localhost:0\x00--otlp-endpoint=https://c:4318\x00--otlp-interval=1s",
	} {
		f.Add(args)
	}
	f.Fuzz(func(t *testing.T, argv string) {
		var args []string
		if argv != "" {
			args = strings.Split(argv, "\x00")
		}
		for _, a := range args {
			// --config and --web.config.file read files: not from here.
			if name := strings.TrimLeft(a, "-"); strings.HasPrefix(name, "config") || strings.HasPrefix(name, "web.config") {
				return
			}
		}
		c, err := Load(args, io.Discard)
		if errors.Is(err, ErrHelp) {
			return
		}
		if err != nil {
			oneLine(t, err)
			return
		}
		if c.WebConfigFile != "" {
			t.Fatalf("web config %q set without the flag", c.WebConfigFile)
		}
		roundTrip(t, c)
	})
}
