package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ebpf-net-obs/ebpf-net-obs/loadgen"
)

// binary builds the real command once per test binary.
func binary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "loadgen")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// execute runs the binary and returns stdout, stderr and the exit status.
func execute(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	}
	t.Fatalf("run %v: %v", args, err)
	return "", "", -1
}

func startServer(t *testing.T, addr string) string {
	t.Helper()
	s, err := loadgen.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return s.Addr().String()
}

func TestCommand(t *testing.T) {
	bin := binary(t)

	t.Run("usage errors exit 2 with one line", func(t *testing.T) {
		for _, args := range [][]string{
			{"client", "--mode", "stream", "--target", "127.0.0.1:1", "--duration", "1s", "--bogus"},
			{"client", "--mode", "udp", "--target", "127.0.0.1:1", "--duration", "1s"},
			{"client", "--mode", "rr", "--target", "127.0.0.1:1", "--duration", "soon"},
			{"client", "--mode", "rr", "--target", "127.0.0.1:1"},
			{"client", "--mode", "rr", "--target", "127.0.0.1:1", "--duration", "1s", "--concurrency", "0"},
			{"server"},
			{"fly"},
			{},
		} {
			stdout, stderr, code := execute(t, bin, args...)
			if code != 2 || stdout != "" || !oneLine(stderr) {
				t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and one 'loadgen: ' line", args, code, stdout, stderr)
			}
		}
	})

	t.Run("unreachable target exits 1 with one line", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		_, stderr, code := execute(t, bin, "client", "--mode", "crr", "--target", addr, "--duration", "1s", "--concurrency", "1", "--json")
		want := "loadgen: connect " + addr + ": connection refused (is 'loadgen server --listen " + addr + "' running?)\n"
		if code != 1 || stderr != want {
			t.Errorf("exit %d, stderr %q; want exit 1 and %q", code, stderr, want)
		}
	})

	t.Run("json schema", func(t *testing.T) {
		for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
			target := startServer(t, addr)
			stdout, stderr, code := execute(t, bin, "client", "--mode", "rr", "--target", target,
				"--duration", "200ms", "--warmup", "50ms", "--concurrency", "2", "--json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			checkSchema(t, stdout)
		}
	})

	t.Run("human summary without --json", func(t *testing.T) {
		target := startServer(t, "127.0.0.1:0")
		stdout, stderr, code := execute(t, bin, "client", "--mode", "stream", "--target", target,
			"--duration", "0.2", "--warmup", "0", "--concurrency", "1")
		if code != 0 || !strings.Contains(stdout, "throughput") || !strings.Contains(stdout, "p99") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})
}

func oneLine(s string) bool {
	return strings.HasPrefix(s, "loadgen: ") && strings.Count(s, "\n") == 1 && strings.HasSuffix(s, "\n")
}

// checkSchema holds the output to the documented field names (docs/loadgen.md) and to JSON types: the
// bench tool and users' scripts depend on both.
func checkSchema(t *testing.T, out string) {
	t.Helper()
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("want exactly one JSON line, got %q", out)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(out), &obj); err != nil {
		t.Fatalf("not JSON: %v: %q", err, out)
	}
	integer := func(v any) bool { f, ok := v.(float64); return ok && f >= 0 && f == float64(int64(f)) }
	number := func(v any) bool { _, ok := v.(float64); return ok }
	str := func(v any) bool { _, ok := v.(string); return ok }
	want := map[string]func(any) bool{
		"mode": str, "ops": integer, "ops_per_sec": number, "bytes": integer, "throughput_bps": number,
		"errors": integer, "latency_ns": nil,
		// Context beyond the contract, documented in docs/loadgen.md.
		"duration_s": number, "warmup_s": number, "concurrency": integer, "size": integer, "rate": number,
	}
	var keys []string
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		check, known := want[k]
		if !known {
			t.Errorf("unexpected field %q", k)
		} else if check != nil && !check(obj[k]) {
			t.Errorf("field %q has the wrong type or value: %#v", k, obj[k])
		}
	}
	want["first_error"] = str // present only when errors > 0
	for k := range want {
		if _, ok := obj[k]; !ok && k != "first_error" {
			t.Errorf("missing field %q", k)
		}
	}
	if obj["mode"] != "rr" {
		t.Errorf("mode %v, want rr", obj["mode"])
	}
	lat, ok := obj["latency_ns"].(map[string]any)
	if !ok || len(lat) != 6 {
		t.Fatalf("latency_ns %#v: want an object of six fields", obj["latency_ns"])
	}
	for _, k := range []string{"p50", "p90", "p99", "p999", "max", "mean"} {
		if !integer(lat[k]) || lat[k].(float64) <= 0 {
			t.Errorf("latency_ns.%s = %#v, want a positive integer", k, lat[k])
		}
	}
	// And the exported struct decodes it without loss.
	var res loadgen.Result
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("decode into loadgen.Result: %v", err)
	}
	if res.Ops == 0 || res.Latency.P50 == 0 {
		t.Errorf("decoded %+v", res)
	}
}

// TestHoldSpreadsOverProcesses holds more connections than one process is
// given and checks, from the JSON lines, that every one was opened in the
// expected number of processes and that the trickle balanced.
func TestHoldSpreadsOverProcesses(t *testing.T) {
	bin := binary(t)
	out, errOut, code := execute(t, bin, "hold", "--conns", "2500", "--per-process", "1000",
		"--trickle", "200ms", "--duration", "1s", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want a ready and a done line, got %q", out)
	}
	var ready, done struct {
		State         string  `json:"state"`
		Conns         int     `json:"conns"`
		Sockets       int     `json:"sockets"`
		Processes     int     `json:"processes"`
		BytesSent     uint64  `json:"bytes_sent"`
		BytesReceived uint64  `json:"bytes_received"`
		HeldSec       float64 `json:"held_s"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &ready); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &done); err != nil {
		t.Fatal(err)
	}
	if ready.State != "ready" || ready.Processes != 3 || ready.Sockets != 5000 {
		t.Errorf("ready line %+v: want 3 processes holding 5000 sockets", ready)
	}
	// The holders' own totals: 2500 connections, one byte each per 200 ms.
	if done.State != "done" || done.Conns != 2500 || done.BytesSent < 2500*4 || done.BytesReceived != done.BytesSent {
		t.Errorf("done line %+v: want 2500 connections, at least 10000 bytes trickled, all received", done)
	}
	if _, errOut, code := execute(t, bin, "hold", "--conns", "10", "--listen", "10.0.0.1"); code != 2 || !strings.Contains(errOut, "loopback") {
		t.Errorf("non-loopback listen: exit %d, %q; want 2 and a line naming loopback", code, errOut)
	}
}
