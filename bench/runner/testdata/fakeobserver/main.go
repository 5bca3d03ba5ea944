// Command fakeobserver stands in for bin/ebpf-net-obs in bench's end-to-end
// test: it takes the observer's flags, attaches one real BPF program (a
// counter on tracepoint sock/inet_sock_set_state, written with cilium/ebpf's
// assembler, so no clang) when it can, serves /healthz and /metrics, and
// exits 0 on SIGTERM after detaching.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

func main() {
	addr := flag.String("listen-address", ":9095", "")
	flag.String("transport", "ringbuf", "")
	flag.String("map-type", "hash", "")
	rate := flag.Int("sample-rate", 1, "")
	flag.String("bpf-stats", "sampled", "")
	flag.Parse()

	prog, l, err := attach()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeobserver: no BPF program attached:", err)
	} else {
		defer prog.Close()
		defer l.Close()
	}
	var scrapes atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		n := scrapes.Add(1)
		fmt.Fprintf(w, "ebpf_net_obs_events_lost_total{reason=\"ringbuf_full\"} %d\n", n)
		fmt.Fprintf(w, "ebpf_net_obs_events_sampled_out_total %d\n", n*int64(*rate-1))
		fmt.Fprintf(w, "ebpf_net_obs_map_entries{map=\"conns\"} 3\nebpf_net_obs_map_capacity{map=\"conns\"} 1024\n")
	})
	srv := &http.Server{Addr: *addr, Handler: mux}
	go func() {
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			fmt.Fprintln(os.Stderr, "fakeobserver:", err)
			os.Exit(1)
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	srv.Close()
}

func attach() (*ebpf.Program, link.Link, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "fake_state", Type: ebpf.TracePoint, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return nil, nil, err
	}
	l, err := link.Tracepoint("sock", "inet_sock_set_state", prog, nil)
	if err != nil {
		prog.Close()
		return nil, nil, err
	}
	return prog, l, nil
}
