package probe

import (
	"errors"
	"os"

	"github.com/cilium/ebpf"
)

// ProgramIDs lists every BPF program loaded in the kernel now.
func ProgramIDs() (map[uint32]bool, error) {
	ids := map[uint32]bool{}
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return ids, nil
		}
		if err != nil {
			return ids, err
		}
		ids[uint32(next)] = true
		id = next
	}
}

// ProgStat is a program's cumulative kernel statistics.
type ProgStat struct {
	ID        uint32
	Name      string
	RunTimeNs uint64
	RunCount  uint64
}

// ProgramStats reads name, run time and run count of each program. Programs
// that vanished in between are left out. Run time and count stay zero unless
// BPF statistics are enabled (see EnableStats).
func ProgramStats(ids map[uint32]bool) map[uint32]ProgStat {
	out := map[uint32]ProgStat{}
	for id := range ids {
		p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
		if err != nil {
			continue
		}
		st := ProgStat{ID: id}
		if info, err := p.Info(); err == nil {
			st.Name = info.Name
		}
		if s, err := p.Stats(); err == nil {
			st.RunTimeNs, st.RunCount = uint64(s.Runtime), s.RunCount
		}
		p.Close()
		out[id] = st
	}
	return out
}

// Alive reports which of ids still exist.
func Alive(ids map[uint32]bool) []uint32 {
	var out []uint32
	for id := range ids {
		if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
			p.Close()
			out = append(out, id)
		}
	}
	return out
}
