package report

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ebpf-net-obs/ebpf-net-obs/bench/plot"
	"github.com/ebpf-net-obs/ebpf-net-obs/bench/results"
)

// KernelResults finds results/kernels/*/bench/results.json under root.
func KernelResults(root string) ([]string, error) {
	return filepath.Glob(filepath.Join(root, "*", "bench", results.FileName))
}

// WriteKernels compares results from several kernels: kernels.png and kernels.md in dir.
func WriteKernels(files []*results.File, dir string) error {
	if len(files) < 2 {
		return fmt.Errorf("kernel comparison needs results from at least 2 kernels, got %d", len(files))
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Meta.Kernel < files[j].Meta.Kernel })
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	figs, err := plot.Kernels(files, dir)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Observer overhead by kernel\n\nThroughput overhead, median of paired ratios [95%% bootstrap CI]; `~` = not significant. ")
	fmt.Fprintf(&b, "Kernels under TCG emulation run far slower than the host: compare ratios, not absolute speeds.\n\n| cell |")
	for _, f := range files {
		fmt.Fprintf(&b, " %s |", f.Meta.Kernel)
	}
	fmt.Fprintf(&b, "\n| --- |%s\n", strings.Repeat(" --- |", len(files)))
	keys := map[string]string{}
	for _, f := range files {
		for _, c := range f.Cells {
			if c.OK() {
				keys[c.Key] = c.Label()
			}
		}
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		fmt.Fprintf(&b, "| %s |", keys[k])
		for _, f := range files {
			if c := f.Find(k); c != nil && c.OK() {
				fmt.Fprintf(&b, " %s |", pct(CellEstimate(c)))
			} else {
				b.WriteString(" – |")
			}
		}
		b.WriteString("\n")
	}
	for _, fig := range figs {
		fmt.Fprintf(&b, "\n![%s](%s)\n", fig.Caption, fig.File)
	}
	return os.WriteFile(filepath.Join(dir, "kernels.md"), []byte(b.String()), 0o644)
}
