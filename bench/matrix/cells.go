package matrix

import (
	"fmt"
	"sort"
)

// None is the transport and map type of a cell that runs no observer.
const None = "none"

// Cell is one configuration measured against its own interleaved baseline.
type Cell struct {
	Workload   Workload   `json:"workload_spec"`
	Transport  string     `json:"transport"`
	MapType    string     `json:"map_type"`
	SampleRate SampleRate `json:"sample_rate"`
	BPFStats   Stats      `json:"bpf_stats"`
}

// Observed reports whether the cell's B arm runs an observer.
func (c Cell) Observed() bool { return c.SampleRate != Off }

// Key identifies a cell across runs (resume, compare); it leaves out the
// kernel so results from two kernels can be matched.
func (c Cell) Key() string {
	k := fmt.Sprintf("%s/%s/%s/rate=%s", c.Workload.Name, c.Transport, c.MapType, c.SampleRate)
	if c.BPFStats != StatsSampled {
		k += "/bpf_stats=" + string(c.BPFStats)
	}
	return k
}

// Cells expands the profile's groups in order, dropping duplicates. A cell
// with sample rate off has no observer, so its transport and map type are None.
func (p *Profile) Cells() []Cell {
	var out []Cell
	seen := map[string]bool{}
	for _, g := range p.Groups {
		stats := g.BPFStats
		if len(stats) == 0 {
			stats = []Stats{StatsSampled}
		}
		for _, w := range g.Workloads {
			for _, t := range g.Transports {
				for _, m := range g.MapTypes {
					for _, r := range g.SampleRates {
						for _, s := range stats {
							c := Cell{Workload: p.Workloads[w], Transport: t, MapType: m, SampleRate: r, BPFStats: s}
							if r == Off {
								c.Transport, c.MapType, c.BPFStats = None, None, StatsSampled
							}
							if !seen[c.Key()] {
								seen[c.Key()] = true
								out = append(out, c)
							}
						}
					}
				}
			}
		}
	}
	return out
}

// Names lists the embedded profiles.
func Names() []string {
	entries, _ := profilesDir()
	sort.Strings(entries)
	return entries
}
