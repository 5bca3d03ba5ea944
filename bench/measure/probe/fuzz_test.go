package probe

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// Fuzz targets for what bench reads from /proc and cgroupfs about the
// observer (stat, fdinfo, cpu.stat, /proc/stat) and from its /metrics.
// None of them may turn input into a negative counter, and each reads back
// what the kernel's format writes. Seed corpora are also in
// testdata/fuzz/<target>/; `make fuzz-short` runs each for a few seconds.

const statLine = "4242 (ebpf-net-obs) S 1 4242 4242 0 -1 4194560 1969 0 0 0 153 48 0 0 20 0 9 0 123456 1350000000 6000 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0\n"

// kernelStat writes /proc/<pid>/stat as fs/proc/array.c does, for the
// fields parseStat reads.
func kernelStat(comm string, ppid, utime, stime uint64) []byte {
	return fmt.Appendf(nil, "77 (%s) R %d 77 77 0 -1 4194304 10 0 0 0 %d %d 0 0 20 0 1 0 100 0 0\n", comm, ppid, utime, stime)
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte(statLine))
	f.Add([]byte("1 (a) b) c) S 0 1 1 0 -1 0 0 0 0 0 7 3 0 0\n"))
	f.Add([]byte("9 (x) Z 1 2 3\n"))
	f.Add([]byte("no parenthesis"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseStat(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
			return
		}
		if st.ppid < 0 || st.utime < 0 || st.stime < 0 {
			t.Errorf("%q: negative ppid or CPU time: %+v", data, st)
		}
	})
}

func FuzzStatRoundTrip(f *testing.F) {
	f.Add("ebpf-net-obs", uint64(1), uint64(153), uint64(48))
	f.Add("a) b (c", uint64(0), uint64(0), uint64(0))
	f.Add(" ", uint64(1<<31-1), uint64(1<<62), uint64(1<<62))
	f.Fuzz(func(t *testing.T, comm string, ppid, utime, stime uint64) {
		ppid, utime, stime = ppid%(1<<31), utime%(1<<63), stime%(1<<63)
		st, err := parseStat(kernelStat(comm, ppid, utime, stime))
		if err != nil {
			t.Fatalf("comm %q: %v", comm, err)
		}
		if want := (procStat{int(ppid), int64(utime), int64(stime)}); st != want {
			t.Errorf("comm %q: got %+v, want %+v", comm, st, want)
		}
	})
}

func FuzzParseFDInfo(f *testing.F) {
	f.Add([]byte("pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nlink_type:\tcgroup\nlink_id:\t7\nprog_tag:\t6deef7357e7b4530\nprog_id:\t41\n"))
	f.Add([]byte("pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nmap_type:\t27\nkey_size:\t0\nvalue_size:\t0\nmax_entries:\t4194304\nmap_flags:\t0x0\nmap_extra:\t0x0\nmemlock:\t4202496\nmap_id:\t42\nfrozen:\t0\n"))
	f.Add([]byte("a:b:c\n:\n::1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for k, v := range parseFDInfo(data) {
			if v < 0 {
				t.Errorf("%q: %s is %d", data, k, v)
			}
			if strings.ContainsAny(k, "\n") || k != strings.TrimSpace(k) {
				t.Errorf("%q: key %q", data, k)
			}
		}
	})
}

func FuzzFDInfoRoundTrip(f *testing.F) {
	f.Add("map_id", uint64(42), "memlock", uint64(8192))
	f.Add("prog_id", uint64(1<<32+5), "pos", uint64(0))
	f.Fuzz(func(t *testing.T, k1 string, v1 uint64, k2 string, v2 uint64) {
		if k1 == k2 || strings.ContainsAny(k1+k2, ":\n") || k1 != strings.TrimSpace(k1) || k2 != strings.TrimSpace(k2) {
			return
		}
		v1, v2 = v1%(1<<63), v2%(1<<63)
		got := parseFDInfo(fmt.Appendf(nil, "%s:\t%d\n%s:\t%d\n", k1, v1, k2, v2))
		if len(got) != 2 || got[k1] != int64(v1) || got[k2] != int64(v2) {
			t.Errorf("%s=%d %s=%d read back as %v", k1, v1, k2, v2, got)
		}
	})
}

func FuzzParseUsage(f *testing.F) {
	f.Add([]byte("usage_usec 342421\nuser_usec 330736\nsystem_usec 11684\nnice_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		total, system := parseUsage(data)
		if total < 0 || system < 0 {
			t.Errorf("%q: total %d, system %d", data, total, system)
		}
	})
}

func FuzzUsageRoundTrip(f *testing.F) {
	f.Add(uint64(342421), uint64(11684))
	f.Add(uint64(0), uint64(math.MaxInt64/1000))
	f.Fuzz(func(t *testing.T, usage, system uint64) {
		usage, system = usage%(math.MaxInt64/1000+1), system%(math.MaxInt64/1000+1)
		data := fmt.Appendf(nil, "usage_usec %d\nuser_usec %d\nsystem_usec %d\nnice_usec 0\n", usage, usage-min(usage, system), system)
		tot, sys := parseUsage(data)
		if tot != int64(usage)*1000 || sys != int64(system)*1000 {
			t.Errorf("%q read as %d, %d", data, tot, sys)
		}
	})
}

func FuzzParseBusy(f *testing.F) {
	f.Add([]byte("cpu  4424 1 1982 319936 705 3 20 7 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"))
	f.Add([]byte("intr 5\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if n := parseBusy(data); n < 0 {
			t.Errorf("%q: busy %d ns", data, n)
		}
	})
}

func FuzzBusyRoundTrip(f *testing.F) {
	f.Add(uint32(4424), uint32(1), uint32(1982), uint32(3), uint32(20), uint32(7), uint32(319936))
	f.Fuzz(func(t *testing.T, user, nice, system, irq, softirq, steal, idle uint32) {
		data := fmt.Appendf(nil, "cpu  %d %d %d %d 705 %d %d %d 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n", user, nice, system, idle, irq, softirq, steal)
		want := (int64(user) + int64(nice) + int64(system) + int64(irq) + int64(softirq) + int64(steal)) * (1e9 / clockTick)
		if got := parseBusy(data); got != want {
			t.Errorf("%q: %d ns, want %d", data, got, want)
		}
	})
}

func FuzzParseMetrics(f *testing.F) {
	f.Add(fixture)
	f.Add("x{a=\"b\"} notanumber\n")
	f.Add("up 1\nx{} NaN 1700000000\ny{le=\"+Inf\"} +Inf\n")
	f.Add("{a=\"b\"} 1\nx{a=\"}\"} 2\n")
	f.Add("novalue\n")
	f.Fuzz(func(t *testing.T, text string) {
		m, err := ParseMetrics(strings.NewReader(text))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
			return
		}
		if n := strings.Count(text, "\n") + 1; len(m.series) > n {
			t.Fatalf("%d series from %d lines", len(m.series), n)
		}
		// Written back in the text format, the series read the same.
		var b strings.Builder
		for _, s := range m.series {
			if strings.ContainsAny(s.name, "{ \t") {
				return // a name the format cannot hold: nothing to write back
			}
			fmt.Fprintf(&b, "%s{%s} %v\n", s.name, s.labels, s.value)
		}
		back, err := ParseMetrics(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("series %+v written back as %q do not parse: %v", m.series, b.String(), err)
		}
		if len(back.series) != len(m.series) {
			t.Fatalf("%d series written back, %d read", len(m.series), len(back.series))
		}
		for i, s := range m.series {
			r := back.series[i]
			if r.name != s.name || r.labels != s.labels || !(r.value == s.value || math.IsNaN(r.value) && math.IsNaN(s.value)) {
				t.Errorf("series %+v read back as %+v", s, r)
			}
		}
	})
}
