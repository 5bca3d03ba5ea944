package matrix

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestEmbeddedProfilesLoad(t *testing.T) {
	for _, name := range []string{"smoke", "quick", "full", "sampling", "target", "noise", "gate"} {
		p, err := Load(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(p.Cells()) == 0 {
			t.Errorf("%s: no cells", name)
		}
	}
	if got := Names(); strings.Join(got, ",") != "full,gate,noise,quick,sampling,scale,smoke,target" {
		t.Errorf("Names() = %v", got)
	}
}

func TestQuickCoversTheBrief(t *testing.T) {
	p, err := Load("quick")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, c := range p.Cells() {
		keys[c.Key()] = true
	}
	// the default cell, its A/A, the gate's calibration arms, a fixed load, stream
	for _, want := range []string{
		"crr-64/none/none/rate=off", "crr-64/ringbuf/hash/rate=1", "crr-64/ringbuf/hash/rate=1/again",
		"crr-64/ringbuf/hash/rate=1/inject", "crr-64/floor", "crr-64-half/ringbuf/hash/rate=1", "stream-64k/ringbuf/hash/rate=1",
	} {
		if !keys[want] {
			t.Errorf("quick lacks %s", want)
		}
	}
	if len(keys) != 7 {
		t.Errorf("quick has %d cells, want 7 (the time budget assumes it)", len(keys))
	}
	if w := p.Workloads["crr-64-half"]; !w.OpenLoop() || w.Load != 0.5 {
		t.Errorf("crr-64-half: %+v, want half the saturation rate", w)
	}
	if p.Run.Accounting <= 0 || p.Fidelity == nil {
		t.Error("quick must time the programs (accounting) and measure fidelity")
	}
}

// The shipped DaemonSet's settings are a cell of the full profile, so what
// users deploy is what bench measures.
func TestFullProfileHasTheDaemonSetCell(t *testing.T) {
	data, err := os.ReadFile("../../deploy/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	setting := func(key string) string {
		m := regexp.MustCompile(`(?m)^\s+` + key + `:\s*"?([^"\s#]+)`).FindSubmatch(data)
		if m == nil {
			t.Fatalf("deploy/daemonset.yaml has no %s", key)
		}
		return string(m[1])
	}
	want := Cell{Transport: setting("transport"), MapType: setting("map-type"), BPFStats: Stats(setting("bpf-stats"))}
	rate, err := ParseSampleRate(setting("sample-rate"))
	if err != nil {
		t.Fatal(err)
	}
	flush, err := time.ParseDuration(setting("flush-interval"))
	if err != nil {
		t.Fatal(err)
	}
	maxConns, err := strconv.Atoi(setting("max-connections"))
	if err != nil {
		t.Fatal(err)
	}
	want.SampleRate, want.FlushInterval, want.MaxConnections = rate, Duration(flush), maxConns
	p, err := Load("full")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Cells() {
		if c.Transport == want.Transport && c.MapType == want.MapType && c.BPFStats == want.BPFStats && c.SampleRate == want.SampleRate &&
			c.FlushInterval == want.FlushInterval && c.MaxConnections == want.MaxConnections && c.Arm == ArmObserver {
			return
		}
	}
	t.Errorf("full has no cell with the DaemonSet's settings %+v", want)
}

func TestArmsExpand(t *testing.T) {
	p, err := Parse("t", []byte(`
run: {duration: 1s, pairs: 1, inject_ns_per_op: 300}
workloads: {w: {mode: crr, size: 64, concurrency: 1}}
groups:
  - {workloads: [w], transports: [ringbuf], map_types: [hash], sample_rates: ["off", 1, 10], arms: [again, inject, floor]}
`))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, c := range p.Cells() {
		keys = append(keys, c.Key())
	}
	want := "w/none/none/rate=off w/ringbuf/hash/rate=1 w/ringbuf/hash/rate=1/again w/ringbuf/hash/rate=1/inject " +
		"w/ringbuf/hash/rate=10 w/ringbuf/hash/rate=10/again w/ringbuf/hash/rate=10/inject w/floor"
	if got := strings.Join(keys, " "); got != want {
		t.Errorf("cells\n got %s\nwant %s", got, want)
	}
	for _, bad := range []string{
		"groups: [{workloads: [w], transports: [ringbuf], map_types: [hash], sample_rates: [1], arms: [inject]}]",
		"groups: [{workloads: [w], transports: [ringbuf], map_types: [hash], sample_rates: [1], arms: [twice]}]",
	} {
		_, err := Parse("t", []byte("run: {duration: 1s, pairs: 1}\nworkloads: {w: {mode: crr, size: 64, concurrency: 1}}\n"+bad))
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want one line", bad, err)
		}
	}
	if _, err := Parse("t", []byte("run: {duration: 1s, pairs: 1}\nworkloads: {w: {mode: crr, size: 64, concurrency: 1, load: 1.5}}\ngroups: [{workloads: [w], transports: [ringbuf], map_types: [hash], sample_rates: [1]}]")); err == nil {
		t.Error("a load above saturation was accepted")
	}
}

func TestExpansionDedupesAndNormalisesOff(t *testing.T) {
	p, err := Parse("t", []byte(`
run: {duration: 1s, pairs: 1}
workloads: {w: {mode: crr, size: 64, concurrency: 1}}
groups:
  - {workloads: [w], transports: [ringbuf, perf], map_types: [hash, lru_hash], sample_rates: ["off", 1]}
  - {workloads: [w], transports: [ringbuf], map_types: [hash], sample_rates: [1], bpf_stats: [sampled, false]}
`))
	if err != nil {
		t.Fatal(err)
	}
	cells := p.Cells()
	// 1 off + 2x2 observed (sampled, the default) + 1 bpf_stats=off (false, as older profiles say)
	if len(cells) != 6 {
		for _, c := range cells {
			t.Log(c.Key())
		}
		t.Fatalf("got %d cells, want 6", len(cells))
	}
	if cells[0].Key() != "w/none/none/rate=off" || cells[0].Observed() {
		t.Errorf("first cell %s observed=%v", cells[0].Key(), cells[0].Observed())
	}
	if p.Run.HealthTimeout.D() == 0 {
		t.Error("health timeout default not applied")
	}
}

func TestBadProfilesAreOneLineErrors(t *testing.T) {
	base := "run: {duration: 1s, pairs: 1}\nworkloads: {w: {mode: crr, size: 64, concurrency: 1}}\n"
	cases := map[string]string{
		"unknown key":   base + "groups: [{workloads: [w], transports: [ringbuf], map_types: [hash], sample_rates: [1], colour: red}]",
		"bad map":       base + "groups: [{workloads: [w], transports: [ringbuf], map_types: [lru], sample_rates: [1]}]",
		"bad transport": base + "groups: [{workloads: [w], transports: [xdp], map_types: [hash], sample_rates: [1]}]",
		"bad rate":      base + "groups: [{workloads: [w], transports: [ringbuf], map_types: [hash], sample_rates: [0]}]",
		"bad workload":  base + "groups: [{workloads: [x], transports: [ringbuf], map_types: [hash], sample_rates: [1]}]",
		"bad mode":      "run: {duration: 1s, pairs: 1}\nworkloads: {w: {mode: udp, size: 1, concurrency: 1}}\ngroups: [{workloads: [w], transports: [ringbuf], map_types: [hash], sample_rates: [1]}]",
		"no pairs":      "run: {duration: 1s}\nworkloads: {w: {mode: crr, size: 1, concurrency: 1}}\ngroups: [{workloads: [w], transports: [ringbuf], map_types: [hash], sample_rates: [1]}]",
		"bad duration":  "run: {duration: fast, pairs: 1}\n",
		"empty axis":    base + "groups: [{workloads: [w], transports: [], map_types: [hash], sample_rates: [1]}]",
	}
	for name, y := range cases {
		_, err := Parse("bad", []byte(y))
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "profile bad: ") {
			t.Errorf("%s: not a one-line profile error: %q", name, err)
		}
	}
	if _, err := Load("nope"); err == nil || !strings.Contains(err.Error(), "no such profile") {
		t.Errorf("Load(nope) = %v", err)
	}
}

func TestSampleRateJSONIsANumber(t *testing.T) {
	for _, r := range []SampleRate{Off, 1, 100} {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var back SampleRate
		if err := back.UnmarshalJSON(b); err != nil || back != r {
			t.Errorf("%v -> %s -> %v (%v)", r, b, back, err)
		}
	}
	if b, _ := Off.MarshalJSON(); string(b) != "0" {
		t.Errorf("off marshals as %s, want 0", b)
	}
	var r SampleRate
	if err := r.UnmarshalJSON([]byte(`"off"`)); err != nil || r != Off {
		t.Errorf(`"off" -> %v %v`, r, err)
	}
}

// TestScaleCoversTheAxes: 0, 1k, 10k and 100k open sockets at one rate,
// and at least three rates with nothing held, every map sized for 100k.
func TestScaleCoversTheAxes(t *testing.T) {
	p, err := Load("scale")
	if err != nil {
		t.Fatal(err)
	}
	sockets := map[int]bool{}
	rates := map[int]bool{}
	for _, c := range p.Cells() {
		if c.MaxConnections < 200000 {
			t.Errorf("%s: map of %d cannot hold 100k sockets", c.Key(), c.MaxConnections)
		}
		if c.Workload.Rate == 5000 {
			sockets[2*c.Workload.Hold] = true
		}
		if c.Workload.Hold == 0 {
			rates[c.Workload.Rate] = true
		}
	}
	for _, n := range []int{0, 1000, 10000, 100000} {
		if !sockets[n] {
			t.Errorf("no cell with %d open sockets at 5000/s", n)
		}
	}
	if len(rates) < 4 || !rates[0] {
		t.Errorf("rates %v: want at least three open-loop rates and saturation", rates)
	}
}
