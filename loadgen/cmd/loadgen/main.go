// Command loadgen is the TCP load generator of the overhead harness:
//
//	loadgen server --listen ADDR
//	loadgen client --mode stream|rr|crr --target ADDR --duration D --concurrency N
//	               [--size BYTES] [--rate OPS] [--warmup D] [--source IP] [--json]
//	loadgen hold --conns N [--per-process N] [--listen IP] [--trickle D] [--duration D] [--json]
//
// Exit status: 0 success, 1 runtime failure (e.g. unreachable target), 2 bad usage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/loadgen"
)

const usage = `usage:
  loadgen server --listen ADDR
  loadgen client --mode stream|rr|crr --target ADDR --duration D --concurrency N
                 [--size BYTES] [--rate OPS] [--warmup D] [--source IP] [--timeout D] [--json]
                 [--cpuprofile FILE]
  loadgen hold --conns N [--per-process N] [--listen IP] [--trickle D] [--duration D] [--json]
`

// usageError is a command-line mistake: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	err := run(os.Args[1:], os.Stdout)
	if err == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{"missing command: want 'server', 'client' or 'hold' (loadgen --help)"}
	}
	switch args[0] {
	case "server":
		return server(args[1:])
	case "client":
		return client(args[1:], stdout)
	case "hold":
		return hold(args[1:], stdout)
	case "hold-worker": // a process `loadgen hold` starts
		return holdWorkerMain(args[1:], stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q: want 'server', 'client' or 'hold'", args[0])}
}

// parse parses fs quietly and turns every failure into one usage line.
func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(os.Stdout, usage)
			os.Exit(0)
		}
		return usageError{fmt.Sprintf("%s: %v (see 'loadgen --help')", fs.Name(), err)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q (see 'loadgen --help')", fs.Name(), fs.Arg(0))}
	}
	return nil
}

func server(args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	listen := fs.String("listen", "", "address to listen on, e.g. :5201 or [::1]:5201")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *listen == "" {
		return usageError{"server: --listen ADDR is required"}
	}
	s, err := loadgen.Listen(*listen)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		s.Close()
	}()
	fmt.Fprintf(os.Stderr, "loadgen: serving stream, rr and crr on %s\n", s.Addr())
	err = s.Serve()
	st := s.Stats()
	fmt.Fprintf(os.Stderr, "loadgen: stopped: %d connections, %d bad headers, %d bytes in, %d bytes out, %d responses\n",
		st.Accepted, st.BadHeaders, st.BytesReceived, st.BytesSent, st.Ops)
	return err
}

// durationValue accepts Go durations ("5s", "500ms") and plain seconds ("5", "0.5").
type durationValue struct{ d *time.Duration }

func (v durationValue) String() string {
	if v.d == nil {
		return ""
	}
	return v.d.String()
}

func (v durationValue) Set(s string) error {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		*v.d = time.Duration(f * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 5s or 500ms")
	}
	*v.d = d
	return nil
}

func client(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	var cfg loadgen.Config
	mode := fs.String("mode", "", "stream, rr or crr")
	fs.StringVar(&cfg.Target, "target", "", "server address host:port")
	fs.StringVar(&cfg.Source, "source", "", "source IP address to bind")
	fs.Var(durationValue{&cfg.Duration}, "duration", "measured duration")
	cfg.Warmup = loadgen.DefaultWarmup
	fs.Var(durationValue{&cfg.Warmup}, "warmup", "warm-up before measuring (0: none)")
	fs.Var(durationValue{&cfg.Timeout}, "timeout", "cut off an operation (connect, request, response) running longer, counted as an error")
	fs.IntVar(&cfg.Concurrency, "concurrency", 1, "parallel connections")
	fs.IntVar(&cfg.Size, "size", 0, "bytes per write (stream, default 131072) or per message (rr/crr, default 64)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "total operations per second, open loop (0: closed loop)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the client to FILE (go tool pprof)")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg.Mode = loadgen.Mode(*mode)
	if *mode == "" {
		return usageError{"client: --mode stream|rr|crr is required"}
	}
	if cfg.Size == 0 && flagSet(fs, "size") {
		return usageError{"client: --size must be at least 1"}
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = -1 // explicit "no warm-up"
	}
	if err := cfg.Validate(); err != nil {
		return usageError{"client: " + err.Error()}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(res)
	}
	_, err = io.WriteString(stdout, res.Summary())
	return err
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || strings.EqualFold(f.Name, name) })
	return set
}
