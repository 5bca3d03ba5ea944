// Command bench measures what the observer costs and turns it into numbers
// people can act on:
//
//	bench run --profile smoke|quick|full|sampling [--out DIR] [--resume] [--observer-cmd CMD]
//	bench report [DIR] | bench report --kernels [DIR...] [--out DIR]
//	bench compare OLD NEW [--threshold PCT] [--format table|benchstat]
//	bench tune --budget PCT [--results DIR] [--workload crr]
//	bench profiles
//	bench soak [--duration 30m] [--rate 2000] [--hold 5000] [--sample 5s] [--out DIR]
//
// See docs/bench.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/ebpf-net-obs/ebpf-net-obs/internal/cliflag"
)

const usage = `usage:
  bench run --profile smoke|quick|full|sampling|FILE.yaml [--out DIR] [--resume]
            [--observer-bin PATH | --observer-cmd 'CMD'] [--loadgen-bin PATH] [--pairs N] [--duration D]
  bench report [DIR]                          rewrite DIR's report.md and plots from results.json
  bench report --kernels [DIR...] [--out DIR] compare kernels (default: results/kernels/*/bench)
  bench compare OLD NEW [--threshold PCT] [--format table|benchstat]
  bench tune --budget PCT [--results DIR] [--workload crr]
  bench profiles                              list the embedded profiles
  bench soak [--duration 30m] [--rate 2000] [--hold 5000] [--sample 5s] [--out DIR]   steady state: growth and exactness
`

// errUsage makes main exit 2.
var errUsage = errors.New("usage")

// exitError carries an exit status without a message of its own.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"run": cmdRun, "report": cmdReport, "compare": cmdCompare, "tune": cmdTune, "profiles": cmdProfiles,
		"soak": cmdSoak,
	}
	cmd, ok := cmds[os.Args[1]]
	if !ok {
		if os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
			fmt.Print(usage)
			return
		}
		fmt.Fprintf(os.Stderr, "bench: unknown command %q\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	err := cmd(os.Args[2:])
	var code exitError
	switch {
	case err == nil:
	case errors.As(err, &code):
		os.Exit(int(code))
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// parse parses flags that may come before, between or after positional
// arguments (`bench compare OLD NEW --threshold 5`).
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := cliflag.Parse(fs, args, os.Stderr); err != nil {
			if !errors.Is(err, flag.ErrHelp) {
				fmt.Fprintln(os.Stderr, err)
				err = errUsage
			}
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
		if len(args) > 0 && args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
	}
}

func cmdProfiles(args []string) error {
	return listProfiles(os.Stdout)
}
