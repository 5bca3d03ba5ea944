package matrix

import (
	"fmt"
	"sort"
)

// None is the transport and map type of a cell that runs no observer.
const None = "none"

// Arm is what a cell's own arm runs besides the load, when it is not
// simply the observer with the cell's settings.
type Arm string

const (
	// ArmObserver is the observer with the cell's settings.
	ArmObserver Arm = ""
	// ArmFloor runs empty programs of bench's own on the observer's hooks:
	// what the kernel's dispatch of those hooks costs, with no work in them.
	ArmFloor Arm = "floor"
	// ArmInject is the observer plus a program of bench's own that adds a
	// calibrated busy loop to every connect(): a regression of known size.
	ArmInject Arm = "inject"
	// ArmAgain is the observer a second time in the same round: an A/A of
	// the observer, the false-alarm rate of a gate comparing two of them.
	ArmAgain Arm = "again"
)

// Arms lists the extra arms a group may ask for.
var Arms = []Arm{ArmFloor, ArmInject, ArmAgain}

// Cell is one configuration measured against the baseline it shares, round
// by round, with the other cells of its workload.
type Cell struct {
	Workload       Workload   `json:"workload_spec"`
	Transport      string     `json:"transport"`
	MapType        string     `json:"map_type"`
	SampleRate     SampleRate `json:"sample_rate"`
	BPFStats       Stats      `json:"bpf_stats"`
	FlushInterval  Duration   `json:"flush_interval,omitempty"`  // 0: the observer's default
	MaxConnections int        `json:"max_connections,omitempty"` // 0: the observer's default
	Arm            Arm        `json:"arm,omitempty"`
	Observer       string     `json:"observer,omitempty"` // its name, when a run measures several
}

// Observed reports whether the cell's arm runs an observer.
func (c Cell) Observed() bool { return c.SampleRate != Off }

// LoadsPrograms reports whether the cell's arm puts BPF programs in the
// kernel (an observer's or bench's own).
func (c Cell) LoadsPrograms() bool { return c.Observed() || c.Arm == ArmFloor }

// Key identifies a cell across runs (resume, compare); it leaves out the
// kernel so results from two kernels can be matched.
func (c Cell) Key() string {
	if c.Arm == ArmFloor {
		return c.Workload.Name + "/floor"
	}
	k := fmt.Sprintf("%s/%s/%s/rate=%s", c.Workload.Name, c.Transport, c.MapType, c.SampleRate)
	if c.BPFStats != DefaultStats {
		k += "/bpf_stats=" + string(c.BPFStats)
	}
	if c.FlushInterval > 0 {
		k += "/flush=" + c.FlushInterval.D().String()
	}
	if c.MaxConnections > 0 {
		k += fmt.Sprintf("/max_connections=%d", c.MaxConnections)
	}
	if c.Observer != "" {
		k += "/observer=" + c.Observer
	}
	if c.Arm != ArmObserver {
		k += "/" + string(c.Arm)
	}
	return k
}

// Cells expands the profile's groups in order, dropping duplicates. A cell
// with sample rate off has no observer, so its transport and map type are
// None. A group's extra arms follow its observed cells: again and inject
// repeat each of them, floor comes once per workload.
func (p *Profile) Cells() []Cell {
	var out []Cell
	seen := map[string]bool{}
	add := func(c Cell) {
		if !seen[c.Key()] {
			seen[c.Key()] = true
			out = append(out, c)
		}
	}
	for _, g := range p.Groups {
		stats := orDefault(g.BPFStats, DefaultStats)
		flushes := orDefault(g.FlushIntervals, 0)
		maxConns := orDefault(g.MaxConnections, 0)
		for _, w := range g.Workloads {
			for _, t := range g.Transports {
				for _, m := range g.MapTypes {
					for _, r := range g.SampleRates {
						for _, s := range stats {
							for _, fl := range flushes {
								for _, mc := range maxConns {
									c := Cell{Workload: p.Workloads[w], Transport: t, MapType: m, SampleRate: r, BPFStats: s, FlushInterval: fl, MaxConnections: mc}
									if r == Off {
										c = Cell{Workload: c.Workload, Transport: None, MapType: None, BPFStats: DefaultStats}
										add(c)
										continue
									}
									add(c)
									for _, a := range g.Arms {
										if a != ArmFloor {
											extra := c
											extra.Arm = a
											add(extra)
										}
									}
								}
							}
						}
					}
				}
			}
			for _, a := range g.Arms {
				if a == ArmFloor {
					add(Cell{Workload: p.Workloads[w], Transport: None, MapType: None, BPFStats: DefaultStats, Arm: ArmFloor})
				}
			}
		}
	}
	return out
}

func orDefault[T any](xs []T, def T) []T {
	if len(xs) == 0 {
		return []T{def}
	}
	return xs
}

// Names lists the embedded profiles.
func Names() []string {
	entries, _ := profilesDir()
	sort.Strings(entries)
	return entries
}
