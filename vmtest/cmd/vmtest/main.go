// Command vmtest runs the project's tests and bench inside other kernels
// (Debian's kernel packages booted with virtme-ng) and reports what each
// kernel offers. See docs/vmtest.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: vmtest COMMAND [flags]

commands:
  setup                      install qemu-system-x86, udev and virtme-ng when missing
  fetch --kernel VERSION     download and unpack a Debian kernel into the cache
  run --kernel VERSION [--timeout D] [--cpus N] [--memory SIZE] -- CMD...
                             boot VERSION and run CMD as root inside; exit status passes through
  features [--json]          report BPF program/map types, helpers, tracepoints of this kernel
  matrix [--out DIR] [--kernels 5.10,6.1,6.12,7] [--include-host]
                             features, tests and a bench smoke run in every kernel
  report [--out DIR]         redraw DIR/report.md and comparison.png from DIR/*/summary.json

VERSION is a release prefix: 5.10, 6.1, 6.12, 7, or a full release such as 6.1.0-47-amd64.
Common flags: --cache-dir DIR (default $XDG_CACHE_HOME/ebpf-net-obs or ~/.cache/ebpf-net-obs)
`)
}

func run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		usage()
		return 2
	}
	switch args[0] {
	case "setup":
		return cmdSetup(ctx, args[1:])
	case "fetch":
		return cmdFetch(ctx, args[1:])
	case "run":
		return cmdRun(ctx, args[1:])
	case "features":
		return cmdFeatures(ctx, args[1:])
	case "matrix":
		return cmdMatrix(ctx, args[1:])
	case "report":
		return cmdReport(args[1:])
	case "-h", "--help", "help":
		usage()
		return 0
	}
	fmt.Fprintf(os.Stderr, "vmtest: unknown command %q\n", args[0])
	usage()
	return 2
}
