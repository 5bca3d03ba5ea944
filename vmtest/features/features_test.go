package features

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func sample() *Report {
	r := &Report{
		SchemaVersion: SchemaVersion, Kernel: "6.1.0-56-amd64", Arch: "amd64",
		GeneratedAt: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), TracefsPath: "/sys/kernel/tracing",
	}
	r.add(CatProgramType, "tracepoint", true, "")
	r.add(CatMapType, "hash", true, "")
	r.add(CatMapType, "lru_hash", true, "")
	r.add(CatMapType, "ringbuf", true, "")
	r.add(CatMapType, "bloom_filter", false, "not supported by this kernel")
	r.add(CatTracepoint, "sock:sock_send_length", false, "not in /sys/kernel/tracing/events/sock")
	r.add(CatTransport, "ringbuf", true, "")
	r.add(CatTransport, "perf", false, "")
	r.finish()
	return r
}

func TestReportSummaryLists(t *testing.T) {
	r := sample()
	if !slices.Equal(r.Transports, []string{"ringbuf"}) {
		t.Errorf("Transports = %v", r.Transports)
	}
	if !slices.Equal(r.MapTypes, []string{"hash", "lru_hash"}) {
		t.Errorf("MapTypes = %v (only the four state map types belong here)", r.MapTypes)
	}
	want := []string{"map_type/bloom_filter", "tracepoint/sock:sock_send_length", "transport/perf"}
	if !slices.Equal(r.Missing, want) {
		t.Errorf("Missing = %v, want %v", r.Missing, want)
	}
	if !r.Has(CatMapType, "ringbuf") || r.Has(CatMapType, "bloom_filter") || r.Has(CatMapType, "nonexistent") {
		t.Error("Has answers wrongly")
	}
}

// The JSON keys are a contract (results/kernels/*/features.json is read by
// the report and by people's scripts): this pins them.
func TestReportJSONStable(t *testing.T) {
	var buf bytes.Buffer
	if err := sample().WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(buf.Bytes(), &generic); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range generic {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"arch", "checks", "generated_at", "kernel", "kernel_version", "map_types", "missing", "schema_version", "tracefs_path", "transports"}
	if !slices.Equal(keys, want) {
		t.Errorf("top-level keys = %v, want %v", keys, want)
	}
	check := generic["checks"].([]any)[4].(map[string]any)
	if check["category"] != "map_type" || check["name"] != "bloom_filter" || check["available"] != false || check["detail"] == nil {
		t.Errorf("check JSON = %v", check)
	}
	if !strings.Contains(buf.String(), `"generated_at": "2026-11-26T12:00:00Z"`) {
		t.Errorf("time not RFC 3339 UTC:\n%s", buf.String())
	}
	back, err := Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if back.Kernel != "6.1.0-56-amd64" || len(back.Checks) != 8 || !back.Has(CatTransport, "ringbuf") {
		t.Errorf("round trip lost data: %+v", back)
	}
}

func TestEmptyListsAreArrays(t *testing.T) {
	r := &Report{}
	r.finish()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"transports": []`, `"map_types": []`, `"missing": []`} {
		if !strings.Contains(buf.String(), k) {
			t.Errorf("want %s (not null) in\n%s", k, buf.String())
		}
	}
}

func TestTracepointExists(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "events", "tcp", "tcp_retransmit_skb"), 0o755); err != nil {
		t.Fatal(err)
	}
	if ok, _ := tracepointExists(dir, "tcp:tcp_retransmit_skb"); !ok {
		t.Error("existing tracepoint not found")
	}
	if ok, detail := tracepointExists(dir, "sock:sock_send_length"); ok || !strings.Contains(detail, "events/sock") {
		t.Errorf("missing tracepoint: ok=%v detail=%q", ok, detail)
	}
	if ok, _ := tracepointExists(dir, "no-colon"); ok {
		t.Error("malformed name accepted")
	}
}

func TestTextListsEveryCheck(t *testing.T) {
	var buf bytes.Buffer
	if err := sample().WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, s := range []string{"6.1.0-56-amd64", "bloom_filter", "NO", "missing: 3"} {
		if !strings.Contains(out, s) {
			t.Errorf("text output lacks %q:\n%s", s, out)
		}
	}
}

// Probe runs on whatever kernel the test runs on; it must never panic and
// must cover every probe, available or not (unprivileged runs get errors).
func TestProbeCoversEveryCheck(t *testing.T) {
	r := Probe(Options{})
	want := 1 + len(ProgramTypes) + len(MapTypeProbes) + len(helperProbes) + len(Tracepoints) + 3
	if len(r.Checks) != want {
		t.Errorf("%d checks, want %d", len(r.Checks), want)
	}
	if r.Kernel == "" || r.SchemaVersion != SchemaVersion {
		t.Errorf("kernel %q schema %d", r.Kernel, r.SchemaVersion)
	}
}
