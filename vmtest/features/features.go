// Package features reports which BPF hooks, program types, map types, helpers
// and event transports the running kernel offers. It is what `vmtest features`
// prints, on the host or inside a guest kernel, so that kernels can be compared
// side by side. The JSON shape (Report) is stable: fields are only ever added.
package features

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// SchemaVersion is bumped only when a field changes meaning; new fields do not bump it.
const SchemaVersion = 1

// Category names used in Check.Category.
const (
	CatProgramType = "program_type"
	CatMapType     = "map_type"
	CatHelper      = "helper"
	CatTracepoint  = "tracepoint"
	CatTransport   = "transport"
	CatKernel      = "kernel"
)

// Check is one probed capability.
type Check struct {
	Category  string `json:"category"`
	Name      string `json:"name"`
	Available bool   `json:"available"`
	// Detail says why it is unavailable (or where it was found), empty when obvious.
	Detail string `json:"detail,omitempty"`
}

// Report is the stable JSON document written as features.json.
type Report struct {
	SchemaVersion int       `json:"schema_version"`
	Kernel        string    `json:"kernel"` // uname -r
	KernelVersion string    `json:"kernel_version"`
	Arch          string    `json:"arch"`
	GeneratedAt   time.Time `json:"generated_at"`
	// TracefsPath is where the tracepoint list was read ("" when no tracefs was found).
	TracefsPath string  `json:"tracefs_path"`
	Checks      []Check `json:"checks"`
	// Transports lists the event transports usable from a tracepoint program
	// ("ringbuf", "perf"), MapTypes the connection-state map types that exist.
	Transports []string `json:"transports"`
	MapTypes   []string `json:"map_types"`
	// Missing names every check that failed, "category/name", for a quick look.
	Missing []string `json:"missing"`
}

// Has reports whether the check category/name exists and is available.
func (r *Report) Has(category, name string) bool {
	for _, c := range r.Checks {
		if c.Category == category && c.Name == name {
			return c.Available
		}
	}
	return false
}

type progProbe struct {
	name string
	pt   ebpf.ProgramType
}

// ProgramTypes are the program types the observer uses or could fall back to.
var ProgramTypes = []progProbe{
	{"tracepoint", ebpf.TracePoint},
	{"raw_tracepoint", ebpf.RawTracepoint},
	{"sock_ops", ebpf.SockOps},
	{"cgroup_skb", ebpf.CGroupSKB},
	{"cgroup_sock", ebpf.CGroupSock},
	{"cgroup_sock_addr", ebpf.CGroupSockAddr},
	{"sched_cls", ebpf.SchedCLS},
	{"xdp", ebpf.XDP},
	{"socket_filter", ebpf.SocketFilter},
	{"perf_event", ebpf.PerfEvent},
	{"kprobe", ebpf.Kprobe},
	{"tracing", ebpf.Tracing}, // fentry/fexit/tp_btf
	{"lsm", ebpf.LSM},
}

type mapProbe struct {
	name string
	mt   ebpf.MapType
}

// MapTypeProbes: the four connection-state map types first (the names are the
// observer's --map-type values), then the transports and helpers' maps.
var MapTypeProbes = []mapProbe{
	{"hash", ebpf.Hash},
	{"lru_hash", ebpf.LRUHash},
	{"percpu_hash", ebpf.PerCPUHash},
	{"lru_percpu_hash", ebpf.LRUCPUHash},
	{"array", ebpf.Array},
	{"percpu_array", ebpf.PerCPUArray},
	{"ringbuf", ebpf.RingBuf},
	{"perf_event_array", ebpf.PerfEventArray},
	{"sk_storage", ebpf.SkStorage},
	{"lpm_trie", ebpf.LPMTrie},
	{"bloom_filter", ebpf.BloomFilter},
}

// StateMapTypes are the observer's --map-type choices.
var StateMapTypes = []string{"hash", "lru_hash", "percpu_hash", "lru_percpu_hash"}

type helperProbe struct {
	prog   string
	pt     ebpf.ProgramType
	helper asm.BuiltinFunc
	name   string
}

var helperProbes = []helperProbe{
	{"tracepoint", ebpf.TracePoint, asm.FnRingbufOutput, "bpf_ringbuf_output"},
	{"tracepoint", ebpf.TracePoint, asm.FnPerfEventOutput, "bpf_perf_event_output"},
	{"tracepoint", ebpf.TracePoint, asm.FnGetCurrentCgroupId, "bpf_get_current_cgroup_id"},
	{"tracepoint", ebpf.TracePoint, asm.FnProbeReadKernel, "bpf_probe_read_kernel"},
	{"raw_tracepoint", ebpf.RawTracepoint, asm.FnRingbufOutput, "bpf_ringbuf_output"},
	{"sock_ops", ebpf.SockOps, asm.FnSkStorageGet, "bpf_sk_storage_get"},
	{"sock_ops", ebpf.SockOps, asm.FnSockOpsCbFlagsSet, "bpf_sock_ops_cb_flags_set"},
	{"sock_ops", ebpf.SockOps, asm.FnGetSocketCookie, "bpf_get_socket_cookie"},
}

// Tracepoints the observer attaches to or would like to ("group:event").
var Tracepoints = []string{
	"sock:inet_sock_set_state",
	"tcp:tcp_retransmit_skb",
	"tcp:tcp_send_reset",
	"tcp:tcp_receive_reset",
	"sock:sock_send_length",
	"sock:sock_recv_length",
	"tcp:tcp_probe",
	"tcp:tcp_destroy_sock",
}

// Options tune Probe; the zero value probes the running kernel.
type Options struct {
	// MountTracefs mounts tracefs at /sys/kernel/tracing when no tracefs is
	// mounted (needs root); otherwise the tracepoint checks report "no tracefs".
	MountTracefs bool
	// Now is the clock (tests).
	Now func() time.Time
}

// Probe inspects the running kernel.
func Probe(opts Options) *Report {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	r := &Report{
		SchemaVersion: SchemaVersion,
		Arch:          runtime.GOARCH,
		GeneratedAt:   now().UTC(),
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		r.Kernel = unix.ByteSliceToString(u.Release[:])
		r.KernelVersion = unix.ByteSliceToString(u.Version[:])
	}

	_, err := os.Stat("/sys/kernel/btf/vmlinux")
	r.add(CatKernel, "btf_vmlinux", err == nil, errDetail(err))
	for _, p := range ProgramTypes {
		err := features.HaveProgramType(p.pt)
		r.add(CatProgramType, p.name, err == nil, errDetail(err))
	}
	for _, m := range MapTypeProbes {
		err := features.HaveMapType(m.mt)
		r.add(CatMapType, m.name, err == nil, errDetail(err))
	}
	for _, h := range helperProbes {
		err := features.HaveProgramHelper(h.pt, h.helper)
		r.add(CatHelper, h.prog+"/"+h.name, err == nil, errDetail(err))
	}

	tracefs, terr := FindTracefs(opts.MountTracefs)
	r.TracefsPath = tracefs
	for _, tp := range Tracepoints {
		if terr != nil {
			r.add(CatTracepoint, tp, false, terr.Error())
			continue
		}
		ok, detail := tracepointExists(tracefs, tp)
		r.add(CatTracepoint, tp, ok, detail)
	}

	// The kprobe program type can exist while kprobe events cannot be
	// created (CONFIG_KPROBE_EVENTS off, as on the Firecracker host).
	kp, kpDetail := false, "no tracefs"
	if terr == nil {
		_, err := os.Stat(filepath.Join(tracefs, "kprobe_events"))
		kp, kpDetail = err == nil, errDetail(err)
		if errors.Is(err, os.ErrNotExist) {
			kpDetail = "no kprobe_events in tracefs (CONFIG_KPROBE_EVENTS off)"
		}
	}
	r.add(CatKernel, "kprobe_events", kp, kpDetail)

	ring := r.Has(CatMapType, "ringbuf") && r.Has(CatHelper, "tracepoint/bpf_ringbuf_output")
	r.add(CatTransport, "ringbuf", ring, "")
	perf := r.Has(CatMapType, "perf_event_array") && r.Has(CatHelper, "tracepoint/bpf_perf_event_output")
	r.add(CatTransport, "perf", perf, "")
	r.finish()
	return r
}

func (r *Report) add(cat, name string, ok bool, detail string) {
	r.Checks = append(r.Checks, Check{Category: cat, Name: name, Available: ok, Detail: detail})
}

// finish derives the summary lists from Checks; call it after editing Checks.
func (r *Report) finish() {
	r.Transports, r.MapTypes, r.Missing = []string{}, []string{}, []string{}
	for _, c := range r.Checks {
		switch {
		case !c.Available:
			r.Missing = append(r.Missing, c.Category+"/"+c.Name)
		case c.Category == CatTransport:
			r.Transports = append(r.Transports, c.Name)
		case c.Category == CatMapType && isStateMap(c.Name):
			r.MapTypes = append(r.MapTypes, c.Name)
		}
	}
}

func isStateMap(name string) bool {
	for _, n := range StateMapTypes {
		if n == name {
			return true
		}
	}
	return false
}

func errDetail(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ebpf.ErrNotSupported):
		return "not supported by this kernel"
	default:
		return err.Error()
	}
}

// FindTracefs returns the directory holding tracefs's events/ tree. With
// mount set and none found, it mounts tracefs at /sys/kernel/tracing.
func FindTracefs(mount bool) (string, error) {
	candidates := []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}
	for _, c := range candidates {
		if st, err := os.Stat(filepath.Join(c, "events")); err == nil && st.IsDir() {
			return c, nil
		}
	}
	if mount {
		if err := unix.Mount("tracefs", candidates[0], "tracefs", 0, ""); err == nil {
			return candidates[0], nil
		} else {
			return "", fmt.Errorf("no tracefs mounted and mounting it at %s failed: %v (run as root, or `mount -t tracefs tracefs %s`)", candidates[0], err, candidates[0])
		}
	}
	return "", fmt.Errorf("no tracefs mounted (mount -t tracefs tracefs /sys/kernel/tracing)")
}

func tracepointExists(tracefs, tp string) (bool, string) {
	group, event, ok := strings.Cut(tp, ":")
	if !ok {
		return false, "bad tracepoint name"
	}
	if _, err := os.Stat(filepath.Join(tracefs, "events", group, event)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, "not in " + filepath.Join(tracefs, "events", group)
		}
		return false, err.Error()
	}
	return true, ""
}
