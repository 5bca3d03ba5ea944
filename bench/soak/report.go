package soak

import (
	"fmt"
	"strings"
)

// seriesCap is the observer's default --max-connection-series: churn
// retained for --close-retention (30 s) exceeds it at the default rate.
const seriesCap = 10000

// Report is report.md: what ran, how to run it again, each series' trend,
// the exactness check and the verdict.
func Report(f *File, figs []Figure) string {
	var b strings.Builder
	m := f.Meta
	fmt.Fprintf(&b, "# Soak: the observer's steady state\n\n**%s**\n\n", f.Verdict)
	fmt.Fprintf(&b, "One observer (`%s`) ran for %s (asked: %s) on Linux %s, commit %s, from %s. ",
		strings.Join(m.Observer, " "), m.Ran, m.Duration, m.Kernel, m.Commit, m.Start.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Beside it `loadgen hold` kept %d connections open (one byte each per 10 s) and `loadgen client --mode crr` "+
		"opened and closed %d connections a second (concurrency %d, in %d runs of up to %s). Every %s bench read the observer's "+
		"VmRSS and open fds from /proc and its /metrics.\n\n", m.Hold, m.Rate, concurrency, f.Load.Chunks, chunk, m.Sample)
	fmt.Fprintf(&b, "Reproduce: `make soak` (30 min) or `make soak SOAK=2h`; this run: `%s`.\n\n", strings.Join(m.Command, " "))
	if m.Interrupted {
		b.WriteString("The run was **interrupted**: what follows is what was collected until then.\n\n")
	}
	writeGrowth(&b, f)
	writeExactness(&b, f)
	writeLoad(&b, f)
	for _, fig := range figs {
		fmt.Fprintf(&b, "![%s](%s)\n\n", fig.Caption, fig.File)
	}
	if len(f.Errors) > 0 {
		b.WriteString("## Errors\n\n")
		for _, e := range f.Errors {
			fmt.Fprintf(&b, "- %s\n", e)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func writeGrowth(b *strings.Builder, f *File) {
	fmt.Fprintf(b, "## Growth\n\n%d samples. The first %.0f%% are warm-up and dropped; the rest are cut into %d blocks "+
		"and a least-squares line is fitted through the block medians. A series **grows** when the slope's 95%% t-interval "+
		"(8 degrees of freedom) lies above zero and the fitted growth over the run exceeds %.0f%% of its mean.\n\n",
		len(f.Samples), 100*WarmupFraction, Blocks, 100*MinGrowth)
	b.WriteString("| series | first block (median) | last block (median) | slope per hour (95% CI) | fitted growth over the run | verdict |\n")
	b.WriteString("| --- | ---: | ---: | --- | ---: | --- |\n")
	for _, g := range f.Growth {
		if g.Verdict == "too few samples" {
			fmt.Fprintf(b, "| %s | | | | | too few samples |\n", g.Name)
			continue
		}
		fmt.Fprintf(b, "| %s | %.4g %s | %.4g %s | %+.3g [%.3g, %.3g] %s/h | %+.2f%% | %s |\n",
			g.Name, g.FirstMedian, g.Unit, g.LastMedian, g.Unit, g.SlopePerHour, g.Low, g.High, g.Unit, g.GrowthPct, g.Verdict)
	}
	b.WriteString("\n")
	for _, g := range f.Growth {
		if g.Key == "series" && g.LastMedian >= 0.95*seriesCap {
			fmt.Fprintf(b, "The per-connection series sit at the observer's `--max-connection-series` cap (%d by default): "+
				"series beyond it are not exported, so a leak of them would show in RSS, not in this row.\n\n", seriesCap)
		}
	}
}

func writeExactness(b *strings.Builder, f *File) {
	b.WriteString("## Exactness\n\nAfter the churn bench waited two flushes, scraped the observer once more and stopped the load. " +
		"The observer's rollups on the loadgen server's side (`direction=\"passive\"`, its `service_port`) must equal what the " +
		"server itself counted; any difference is a drift and fails the soak.\n\n")
	if len(f.Exactness) == 0 {
		b.WriteString("No exactness check: see Errors.\n\n")
		return
	}
	b.WriteString("| counter | observer | load | load's figure | drift |\n| --- | ---: | ---: | --- | ---: |\n")
	for _, e := range f.Exactness {
		fmt.Fprintf(b, "| `ebpf_net_obs_%s` | %.0f | %.0f | %s | %+.0f |\n", e.Counter, e.Observer, e.Load, e.From, e.Drift)
	}
	b.WriteString("\n")
}

func writeLoad(b *strings.Builder, f *File) {
	l := f.Load
	b.WriteString("## Load and losses\n\n")
	fmt.Fprintf(b, "- client: %d operations, %d payload bytes, %d errors", l.Ops, l.Bytes, l.Errors)
	if l.FirstError != "" {
		fmt.Fprintf(b, " (first: %s)", l.FirstError)
	}
	b.WriteString("\n")
	if s := l.Server; s != nil {
		fmt.Fprintf(b, "- server: %d connections, %d bad headers, %d bytes in, %d bytes out, %d responses\n",
			s.Connections, s.BadHeaders, s.BytesIn, s.BytesOut, s.Responses)
	}
	if h := l.Hold; h != nil {
		fmt.Fprintf(b, "- hold: %d connections for %.0f s, %d bytes sent, %d received\n", h.Conns, h.HeldSec, h.BytesSent, h.BytesReceived)
	}
	if n := len(f.Samples); n > 0 {
		last := f.Samples[n-1]
		fmt.Fprintf(b, "- events lost (`ebpf_net_obs_events_lost_total`, all reasons): %.0f\n", last.EventsLost)
		if last.Flushes > 0 {
			fmt.Fprintf(b, "- flushes: %.0f, %.2f ms of CPU each on average\n", last.Flushes, 1000*last.FlushCPU/last.Flushes)
		}
	}
	b.WriteString("\n")
}
