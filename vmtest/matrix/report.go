package matrix

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ebpf-net-obs/ebpf-net-obs/vmtest/features"
)

// BenchCell is what the report reads from a bench results.json cell; the
// bench writes more.
type BenchCell struct {
	Workload              string             `json:"workload"`
	Transport             string             `json:"transport"`
	MapType               string             `json:"map_type"`
	SampleRate            flexNumber         `json:"sample_rate"`
	ThroughputOverheadPct float64            `json:"throughput_overhead_pct"`
	BPFNsPerRun           map[string]float64 `json:"bpf_ns_per_run"`
}

// flexNumber reads a JSON number or a string (older bench results wrote
// sample_rate as a string, "off" for the no-observer cell).
type flexNumber float64

func (f *flexNumber) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*f = 0
		return nil
	}
	// Anything not numeric ("off" for the no-observer cell) reads as 0.
	v, _ := strconv.ParseFloat(s, 64)
	*f = flexNumber(v)
	return nil
}

// BenchResults is the part of bench's results.json the report uses.
type BenchResults struct {
	Cells []BenchCell `json:"cells"`
}

// kernelData is one column of the report.
type kernelData struct {
	sum   *Summary
	feat  *features.Report
	bench *BenchResults
}

func (k kernelData) label() string {
	if k.sum.Host {
		return k.sum.Release + " (host)"
	}
	return k.sum.Release
}

func load(out string, sums []*Summary) []kernelData {
	var ks []kernelData
	for _, s := range sums {
		k := kernelData{sum: s}
		if s.Release != "" {
			dir := filepath.Join(out, s.Release)
			var fr features.Report
			if readJSON(filepath.Join(dir, "features.json"), &fr) == nil {
				k.feat = &fr
			}
			var br BenchResults
			if s.BenchResults != "" && readJSON(filepath.Join(dir, s.BenchResults), &br) == nil && len(br.Cells) > 0 {
				k.bench = &br
			}
		}
		ks = append(ks, k)
	}
	return ks
}

// WriteReport writes report.md and comparison.png into out.
func WriteReport(out string, sums []*Summary) error {
	ks := load(out, sums)
	var b strings.Builder
	b.WriteString("# Kernel matrix\n\nWritten by `vmtest matrix`. Each kernel booted under virtme-ng " +
		"(TCG unless KVM works here: absolute speeds inside a guest mean little, ratios inside one guest compare).\n\n")

	b.WriteString("| kernel | package | accel | boot s | total s |")
	names := stepNames(ks)
	for _, n := range names {
		fmt.Fprintf(&b, " %s |", n)
	}
	b.WriteString(" missing features |\n|---|---|---|---|---|")
	for range names {
		b.WriteString("---|")
	}
	b.WriteString("---|\n")
	for _, k := range ks {
		s := k.sum
		pkg := s.Package
		if s.PackageVersion != "" {
			pkg += " " + s.PackageVersion
		}
		rel := k.label()
		if s.Release == "" {
			rel = s.Requested
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.0f | %.0f |", rel, pkg, s.Accel, s.BootSeconds, s.TotalSeconds)
		for _, n := range names {
			cell := "—"
			if st := s.Step(n); st != nil {
				cell = st.Status
			}
			fmt.Fprintf(&b, " %s |", cell)
		}
		fmt.Fprintf(&b, " %d |\n", len(s.FeaturesMissing))
	}
	for _, k := range ks {
		if k.sum.Error != "" {
			fmt.Fprintf(&b, "\n**%s**: %s\n", k.sum.Requested, k.sum.Error)
		}
		for _, st := range k.sum.Steps {
			if st.Status == StatusNotAvailable {
				fmt.Fprintf(&b, "\n%s `%s`: not available (%s)\n", k.label(), st.Command, st.Detail)
			}
		}
	}

	writeFeatureTable(&b, ks)
	writeBenchTable(&b, ks)
	b.WriteString("\n![comparison](comparison.png)\n")
	if err := os.WriteFile(filepath.Join(out, "report.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	return writeComparisonPNG(filepath.Join(out, "comparison.png"), ks)
}

func stepNames(ks []kernelData) []string {
	var names []string
	seen := map[string]bool{}
	for _, k := range ks {
		for _, st := range k.sum.Steps {
			if !seen[st.Name] {
				seen[st.Name] = true
				names = append(names, st.Name)
			}
		}
	}
	return names
}

// writeFeatureTable lists every check whose answer differs between kernels,
// then counts the ones all share.
func writeFeatureTable(b *strings.Builder, ks []kernelData) {
	var with []kernelData
	for _, k := range ks {
		if k.feat != nil {
			with = append(with, k)
		}
	}
	if len(with) == 0 {
		b.WriteString("\n## Features\n\nNo kernel produced features.json.\n")
		return
	}
	type key struct{ cat, name string }
	var order []key
	seen := map[key]bool{}
	for _, k := range with {
		for _, c := range k.feat.Checks {
			kk := key{c.Category, c.Name}
			if !seen[kk] {
				seen[kk] = true
				order = append(order, kk)
			}
		}
	}
	b.WriteString("\n## Features that differ between kernels\n\n| check |")
	for _, k := range with {
		fmt.Fprintf(b, " %s |", k.label())
	}
	b.WriteString("\n|---|")
	for range with {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	same := 0
	for _, kk := range order {
		var cells []string
		differ := false
		for i, k := range with {
			v := "n/a"
			if k.feat.Has(kk.cat, kk.name) {
				v = "yes"
			} else {
				for _, c := range k.feat.Checks {
					if c.Category == kk.cat && c.Name == kk.name {
						v = "**no**"
					}
				}
			}
			cells = append(cells, v)
			if i > 0 && v != cells[0] {
				differ = true
			}
		}
		if !differ {
			same++
			continue
		}
		fmt.Fprintf(b, "| %s/%s | %s |\n", kk.cat, kk.name, strings.Join(cells, " | "))
	}
	fmt.Fprintf(b, "\n%d further checks give the same answer on every kernel (see each features.json).\n", same)
}

func writeBenchTable(b *strings.Builder, ks []kernelData) {
	b.WriteString("\n## Bench smoke run\n\n")
	any := false
	for _, k := range ks {
		if k.bench == nil {
			continue
		}
		any = true
		fmt.Fprintf(b, "### %s\n\n| workload | transport | map type | sample rate | throughput overhead %% | BPF ns/run |\n|---|---|---|---|---|---|\n", k.label())
		for _, c := range k.bench.Cells {
			var progs []string
			for p := range c.BPFNsPerRun {
				progs = append(progs, p)
			}
			sort.Strings(progs)
			var ns []string
			for _, p := range progs {
				ns = append(ns, fmt.Sprintf("%s %.0f", p, c.BPFNsPerRun[p]))
			}
			fmt.Fprintf(b, "| %s | %s | %s | %g | %.2f | %s |\n", c.Workload, c.Transport, c.MapType, float64(c.SampleRate), c.ThroughputOverheadPct, strings.Join(ns, ", "))
		}
		b.WriteString("\n")
	}
	if !any {
		b.WriteString("No kernel has bench results (bench not available or it failed: see each kernel's bench.log and summary.json).\n")
	}
}

// LoadSummaries reads every out/<release>/summary.json, host first, then by
// release; `vmtest report` redraws the report from them.
func LoadSummaries(out string) ([]*Summary, error) {
	files, err := filepath.Glob(filepath.Join(out, "*", "summary.json"))
	if err != nil {
		return nil, err
	}
	var sums []*Summary
	for _, f := range files {
		var s Summary
		if err := readJSON(f, &s); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		sums = append(sums, &s)
	}
	sort.SliceStable(sums, func(i, j int) bool {
		if sums[i].Host != sums[j].Host {
			return sums[i].Host
		}
		return versionLess(sums[i].Release, sums[j].Release)
	})
	return sums, nil
}

// versionLess orders releases numerically: 5.10 < 6.1 < 6.12 < 7.2.
func versionLess(a, b string) bool {
	pa, pb := strings.FieldsFunc(a, notDigit), strings.FieldsFunc(b, notDigit)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		if pa[i] == pb[i] {
			continue
		}
		if len(pa[i]) != len(pb[i]) {
			return len(pa[i]) < len(pb[i])
		}
		return pa[i] < pb[i]
	}
	return len(pa) < len(pb)
}

func notDigit(r rune) bool { return r < '0' || r > '9' }
