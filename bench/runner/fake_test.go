package runner

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a fake loadgen and a fake observer when
// BENCH_FAKE=1: the runner's process handling is tested for real, in
// milliseconds, without the real binaries.
func TestMain(m *testing.M) {
	if os.Getenv("BENCH_FAKE") == "1" {
		fakeMain(os.Args[1:])
		return
	}
	os.Exit(m.Run())
}

func fakeMain(args []string) {
	if counter := os.Getenv("BENCH_FAKE_COUNT"); counter != "" && len(args) > 0 && args[0] == "client" {
		f, _ := os.OpenFile(counter, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		fmt.Fprintln(f, strings.Join(args, " "))
		f.Close()
	}
	switch {
	case len(args) > 0 && args[0] == "server":
		l, err := net.Listen("tcp", flagValue(args, "--listen"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	case len(args) > 0 && args[0] == "client":
		d, _ := time.ParseDuration(flagValue(args, "--duration"))
		warm, _ := time.ParseDuration(flagValue(args, "--warmup"))
		time.Sleep(warm + d)
		ops := 1000 + float64(time.Now().UnixNano()%50)
		json.NewEncoder(os.Stdout).Encode(map[string]any{
			"mode": flagValue(args, "--mode"), "ops": ops, "ops_per_sec": ops / d.Seconds(),
			"bytes": ops * 64, "throughput_bps": ops * 64 * 8 / d.Seconds(), "errors": 0,
			"latency_ns": map[string]float64{"p50": 50000, "p90": 70000, "p99": 90000, "p999": 120000, "max": 200000, "mean": 55000},
		})
	case os.Getenv("BENCH_FAKE_OBSERVER") == "crash":
		fmt.Fprintln(os.Stderr, "load BPF: operation not permitted")
		os.Exit(2)
	default:
		fakeObserver(flagValue(args, "--listen-address"))
	}
}

func fakeObserver(addr string) {
	var scrapes atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		n := scrapes.Add(1)
		fmt.Fprintf(w, "ebpf_net_obs_events_lost_total{reason=\"ringbuf_full\"} %d\n", 2*n)
		fmt.Fprintf(w, "ebpf_net_obs_events_sampled_out_total %d\n", 10*n)
		fmt.Fprintf(w, "ebpf_net_obs_map_entries{map=\"conns\"} 5\nebpf_net_obs_map_capacity{map=\"conns\"} 1024\n")
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go http.Serve(l, mux)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	os.Exit(0)
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}
