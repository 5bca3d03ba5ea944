package matrix

import (
	"encoding/json"
	"fmt"
)

// Stats is a cell's BPF run-time statistics mode, the observer's --bpf-stats.
type Stats string

const (
	// StatsSampled is the observer's default: statistics on for one short
	// window per period. Bench cannot time the programs in these cells (the
	// kernel's counters move only inside the observer's windows).
	StatsSampled Stats = "sampled"
	// StatsOn keeps them on, and bench holds them on too, so the programs'
	// run time is measured (for any observer).
	StatsOn Stats = "on"
	// StatsOff never switches them on.
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
	case "", string(StatsSampled):
		*s = StatsSampled
	case string(StatsOn), string(StatsOff):
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
