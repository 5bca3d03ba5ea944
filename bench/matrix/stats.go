package matrix

import (
	"encoding/json"
	"fmt"
)

// Stats is a cell's BPF run-time statistics mode, the observer's --bpf-stats.
type Stats string

// DefaultStats is the observer's own default (--bpf-stats=off): a cell
// in this mode carries no suffix in its key.
const DefaultStats = StatsOff

const (
	// StatsSampled has the observer turn the statistics on for one short
	// window per period. Bench cannot time the programs in its measured
	// windows (the kernel's counters move only inside the observer's).
	StatsSampled Stats = "sampled"
	// StatsOn keeps them on, and bench holds them on too, so the programs'
	// run time is measured (for any observer).
	StatsOn Stats = "on"
	// StatsOff never switches them on: the observer's default. Bench times
	// the programs in a separate accounting window after the measured one.
	StatsOff Stats = "off"
)

// UnmarshalText accepts the mode names and, as older profiles wrote them,
// true (on) and false (off).
func (s *Stats) UnmarshalText(b []byte) error {
	switch v := string(b); v {
	case "true":
		*s = StatsOn
	case "false":
		*s = StatsOff
	case "":
		*s = DefaultStats
	case string(StatsSampled), string(StatsOn), string(StatsOff):
		*s = Stats(v)
	default:
		return fmt.Errorf("bpf_stats %q: want sampled, on or off", v)
	}
	return nil
}

// UnmarshalJSON reads results written when the field was a boolean, too.
func (s *Stats) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return s.UnmarshalText(fmt.Append(nil, v))
}

// TimesPrograms reports whether bench measures the programs' run time in
// cells of this mode.
func (s Stats) TimesPrograms() bool { return s == StatsOn }
