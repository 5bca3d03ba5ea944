// Package matrix turns a bench profile (YAML) into the ordered list of cells
// to measure. A profile is data: axes grouped into cross products, so a
// profile can vary one factor at a time instead of paying for a full grid.
package matrix

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/profiles"
)

// Names accepted on each axis; they are the observer's flag values.
var (
	Modes      = []string{"stream", "rr", "crr"}
	Transports = []string{"ringbuf", "perf"}
	MapTypes   = []string{"hash", "lru_hash", "percpu_hash", "lru_percpu_hash"}
)

// Duration is a time.Duration written as "2s" in YAML and JSON.
type Duration time.Duration

// UnmarshalYAML parses Go duration syntax.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: bad duration %q (want e.g. 2s, 500ms)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads Go duration syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// SampleRate is the observer's --sample-rate; 0 means "off": no observer at all.
type SampleRate int

// Off is the sample rate of a cell that runs no observer in either arm.
const Off SampleRate = 0

func (r SampleRate) String() string {
	if r == Off {
		return "off"
	}
	return strconv.Itoa(int(r))
}

// ParseSampleRate reads "off" or a positive integer.
func ParseSampleRate(s string) (SampleRate, error) {
	if s == "off" {
		return Off, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("bad sample rate %q (want off or an integer >= 1)", s)
	}
	return SampleRate(n), nil
}

// UnmarshalYAML reads "off" or an integer.
func (r *SampleRate) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSampleRate(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*r = v
	return nil
}

// MarshalJSON writes the number, 0 for off: one type for every consumer
// of results.json (jq, vmtest's report), no string/number mix.
func (r SampleRate) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Itoa(int(r))), nil
}

// UnmarshalJSON reads the number (0 = off) or "off".
func (r *SampleRate) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "0" {
		*r = Off
		return nil
	}
	v, err := ParseSampleRate(s)
	*r = v
	return err
}

// Workload is one loadgen client configuration.
type Workload struct {
	Name        string `yaml:"-" json:"name"`
	Mode        string `yaml:"mode" json:"mode"`
	Size        int    `yaml:"size" json:"size"`
	Concurrency int    `yaml:"concurrency" json:"concurrency"`
	Rate        int    `yaml:"rate,omitempty" json:"rate,omitempty"` // ops/s, open loop; 0 = as fast as possible
	// Load, when set, offers this fraction of the workload's saturation
	// rate (measured without an observer at the start of the run) in open
	// loop: the load a service runs at, not the most it can take.
	Load float64 `yaml:"load,omitempty" json:"load,omitempty"`
	// Pin puts the loadgen server on the first CPU and the client on the
	// last, instead of leaving both to the scheduler: one of the things
	// the noise profile compares.
	Pin bool `yaml:"pin,omitempty" json:"pin,omitempty"`
	// Hold keeps this many loopback connections open beside the load in
	// every arm (`loadgen hold`: two sockets each), opened once the arm's
	// observer runs so it follows them: a node's long-lived connections.
	Hold int `yaml:"hold,omitempty" json:"hold,omitempty"`
}

// OpenLoop reports whether the workload offers a fixed rate.
func (w Workload) OpenLoop() bool { return w.Rate > 0 || w.Load > 0 }

// RunSettings time and repeat every cell of a profile.
type RunSettings struct {
	Duration      Duration `yaml:"duration" json:"duration"`
	Warmup        Duration `yaml:"warmup" json:"warmup"`
	Settle        Duration `yaml:"settle" json:"settle"`
	Pairs         int      `yaml:"pairs" json:"pairs"`
	HealthTimeout Duration `yaml:"health_timeout" json:"health_timeout"`
	// Accounting is a short run after each measured one, with the kernel's
	// BPF statistics held on, that times the programs (ns per run, runs
	// per operation) without putting the statistics' cost in the
	// measured window; 0 leaves it out.
	Accounting Duration `yaml:"accounting,omitempty" json:"accounting,omitempty"`
	// InjectNsPerOp is the cost an inject arm adds to every connect().
	InjectNsPerOp float64 `yaml:"inject_ns_per_op,omitempty" json:"inject_ns_per_op,omitempty"`
}

// Group is one cross product of axes.
type Group struct {
	Workloads   []string     `yaml:"workloads"`
	Transports  []string     `yaml:"transports"`
	MapTypes    []string     `yaml:"map_types"`
	SampleRates []SampleRate `yaml:"sample_rates"`
	BPFStats    []Stats      `yaml:"bpf_stats"` // empty = [off], the observer's default
	// FlushIntervals and MaxConnections are the observer's
	// --flush-interval and --max-connections; empty = its defaults.
	FlushIntervals []Duration `yaml:"flush_intervals"`
	MaxConnections []int      `yaml:"max_connections"`
	// Arms adds arms to the group's rounds: floor, inject, again.
	Arms []Arm `yaml:"arms"`
}

// FidelityPlan measures what each sample rate costs in accuracy: observers
// at rate 1 and at each rate side by side on the same traffic.
type FidelityPlan struct {
	Workload string   `yaml:"workload"`
	Rates    []int    `yaml:"rates"`
	Duration Duration `yaml:"duration"`
}

// Profile is a parsed, validated bench matrix.
type Profile struct {
	Name        string              `yaml:"-"`
	Description string              `yaml:"description"`
	Run         RunSettings         `yaml:"run"`
	Workloads   map[string]Workload `yaml:"workloads"`
	Groups      []Group             `yaml:"groups"`
	Fidelity    *FidelityPlan       `yaml:"fidelity"`
}

// Load reads a profile by name (smoke, quick, full: embedded) or by path to
// a YAML file. Every error is one line naming the profile.
func Load(nameOrPath string) (*Profile, error) {
	var data []byte
	var err error
	name := nameOrPath
	if strings.ContainsRune(nameOrPath, '/') || strings.HasSuffix(nameOrPath, ".yaml") || strings.HasSuffix(nameOrPath, ".yml") {
		data, err = os.ReadFile(nameOrPath)
		name = strings.TrimSuffix(filepath.Base(nameOrPath), filepath.Ext(nameOrPath))
	} else {
		data, err = profiles.FS.ReadFile(nameOrPath + ".yaml")
		if err != nil {
			return nil, fmt.Errorf("profile %q: no such profile (want smoke, quick, full or a path to a .yaml file)", nameOrPath)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("profile %s: %v", nameOrPath, err)
	}
	p, err := Parse(name, data)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Parse decodes and validates profile YAML; unknown keys are errors.
func Parse(name string, data []byte) (*Profile, error) {
	var p Profile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("profile %s: %s", name, oneLine(err.Error()))
	}
	p.Name = name
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("profile %s: %v", name, err)
	}
	return &p, nil
}

func oneLine(s string) string {
	s = strings.TrimPrefix(s, "yaml: unmarshal errors:\n")
	return strings.Join(strings.Fields(s), " ")
}

func (p *Profile) validate() error {
	r := p.Run
	switch {
	case r.Duration <= 0:
		return errors.New("run.duration must be > 0")
	case r.Pairs < 1:
		return errors.New("run.pairs must be >= 1")
	case r.Warmup < 0 || r.Settle < 0:
		return errors.New("run.warmup and run.settle must be >= 0")
	}
	if r.HealthTimeout <= 0 {
		p.Run.HealthTimeout = Duration(30 * time.Second)
	}
	if len(p.Workloads) == 0 {
		return errors.New("no workloads defined")
	}
	for name, w := range p.Workloads {
		if !contains(Modes, w.Mode) {
			return fmt.Errorf("workload %s: unknown mode %q (want %s)", name, w.Mode, strings.Join(Modes, "|"))
		}
		if w.Size < 1 || w.Concurrency < 1 || w.Rate < 0 {
			return fmt.Errorf("workload %s: size and concurrency must be >= 1, rate >= 0", name)
		}
		if w.Load < 0 || w.Load > 1 || (w.Load > 0 && w.Rate > 0) {
			return fmt.Errorf("workload %s: load is a fraction of saturation in (0, 1], and excludes rate", name)
		}
		w.Name = name
		p.Workloads[name] = w
	}
	if len(p.Groups) == 0 {
		return errors.New("no groups defined")
	}
	for i, g := range p.Groups {
		if err := p.validateGroup(g); err != nil {
			return fmt.Errorf("group %d: %v", i+1, err)
		}
	}
	if r.InjectNsPerOp < 0 || r.Accounting < 0 {
		return errors.New("run.inject_ns_per_op and run.accounting must be >= 0")
	}
	if fp := p.Fidelity; fp != nil {
		if _, ok := p.Workloads[fp.Workload]; !ok {
			return fmt.Errorf("fidelity: unknown workload %q (not under workloads:)", fp.Workload)
		}
		if len(fp.Rates) == 0 || fp.Duration <= 0 {
			return errors.New("fidelity: rates and duration must be set")
		}
		for _, r := range fp.Rates {
			if r < 2 {
				return fmt.Errorf("fidelity: rate %d: compare rates >= 2 with rate 1", r)
			}
		}
	}
	return nil
}

func (p *Profile) validateGroup(g Group) error {
	if len(g.Workloads) == 0 || len(g.Transports) == 0 || len(g.MapTypes) == 0 || len(g.SampleRates) == 0 {
		return errors.New("workloads, transports, map_types and sample_rates must each list at least one value")
	}
	for _, w := range g.Workloads {
		if _, ok := p.Workloads[w]; !ok {
			return fmt.Errorf("unknown workload %q (not under workloads:)", w)
		}
	}
	for _, t := range g.Transports {
		if !contains(Transports, t) {
			return fmt.Errorf("unknown transport %q (want %s)", t, strings.Join(Transports, "|"))
		}
	}
	for _, m := range g.MapTypes {
		if !contains(MapTypes, m) {
			return fmt.Errorf("unknown map type %q (want %s)", m, strings.Join(MapTypes, "|"))
		}
	}
	for _, a := range g.Arms {
		if !contains(Arms, a) {
			return fmt.Errorf("unknown arm %q (want floor, inject or again)", a)
		}
		if a == ArmInject && p.Run.InjectNsPerOp <= 0 {
			return errors.New("an inject arm needs run.inject_ns_per_op > 0")
		}
	}
	for _, mc := range g.MaxConnections {
		if mc < 1 {
			return fmt.Errorf("max_connections %d: must be >= 1", mc)
		}
	}
	return nil
}

func contains[T comparable](list []T, s T) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Observed reports whether a cell at this rate runs an observer.
func (r SampleRate) Observed() bool { return r != Off }
