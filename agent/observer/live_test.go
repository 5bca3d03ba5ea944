package observer

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/config"
)

// An open connection's byte counters are exact while it is still open, on
// both sockets, sampled or not: conns_live reads them from the sockets at
// every flush. Where it cannot (per-CPU maps, kernels before 5.13) the
// per-ACK callback carries them as of the last ACK that carried an RTT
// sample: never ahead of the application, not exact (documented). Ground
// truth is what the test's client and server moved.
func TestLiveBytesWhileOpen(t *testing.T) {
	for _, tc := range []struct {
		mapType string
		rate    uint32
	}{{"hash", 1}, {"hash", 1000}, {"lru_hash", 1000}, {"percpu_hash", 1}} {
		t.Run(fmt.Sprintf("%s/rate=%d", tc.mapType, tc.rate), func(t *testing.T) {
			ob := start(t, func(c *config.Config) { c.MapType, c.SampleRate = tc.mapType, tc.rate })
			fromSockets := ob.kern.LiveFromSockets()
			if !fromSockets {
				t.Logf("live counters ride on ACKs: %s", ob.kern.Disabled["live_from_sockets"])
				if tc.rate > 1 {
					t.Skip("per-ACK live counters thin with the sample rate")
				}
			}
			client, server, ln := loopbackPair(t)

			var sentC, sentS int64
			for round, size := range []int{1000, 70_000, 333} {
				n, err := client.Write(make([]byte, size))
				if err != nil {
					t.Fatal(err)
				}
				sentC += int64(n)
				if _, err := io.ReadFull(server, make([]byte, size)); err != nil {
					t.Fatal(err)
				}
				reply := 10*size + round
				n, err = server.Write(make([]byte, reply))
				if err != nil {
					t.Fatal(err)
				}
				sentS += int64(n)
				if _, err := io.ReadFull(client, make([]byte, reply)); err != nil {
					t.Fatal(err)
				}
				for _, side := range []struct {
					name       string
					conn       net.Conn
					sent, recv int64
				}{{"client", client, sentC, sentS}, {"server", server, sentS, sentC}} {
					labels := connLabels(side.conn.LocalAddr(), side.conn.RemoteAddr())
					eventually(t, 5*time.Second, fmt.Sprintf("round %d %s live bytes", round, side.name), func() (bool, string) {
						s := ob.value(t, "ebpf_net_obs_connection_bytes_sent_total", labels)
						r := ob.value(t, "ebpf_net_obs_connection_bytes_received_total", labels)
						if !fromSockets {
							return s > 0 && s <= float64(side.sent) && r <= float64(side.recv),
								fmt.Sprintf("observer sent=%v received=%v, application sent=%d received=%d", s, r, side.sent, side.recv)
						}
						return s == float64(side.sent) && r == float64(side.recv),
							fmt.Sprintf("observer sent=%v received=%v, application sent=%d received=%d", s, r, side.sent, side.recv)
					})
				}
			}
			if v := ob.value(t, "ebpf_net_obs_connections_closed_total", map[string]string{"service_port": strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), "direction": "active"}); v > 0 {
				t.Errorf("the connection counted as closed (%v) while it is open", v)
			}
		})
	}
}

// loopbackPair connects a client to a fresh IPv4 loopback listener and
// returns both ends and the listener; all three close when the test ends.
func loopbackPair(t *testing.T) (client, server net.Conn, ln net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close() })
	return client, server, ln
}
