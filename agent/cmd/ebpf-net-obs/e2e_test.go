package main

// End-to-end tests of the binary: each builds bin/ebpf-net-obs from this
// package, runs it as a separate process on a loopback port and judges it
// from outside, as an operator would: /healthz, /metrics, the kernel's own
// object IDs and bpffs.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
)

func TestMain(m *testing.M) {
	if os.Getenv(capProbeEnv) != "" { // re-run as another user: see capProbe
		os.Exit(capProbe())
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binDir    string // every user may enter it and read and run what is in it
	binPath   string
	buildErr  error
)

// observerBinary builds this package once per test run into binDir (the
// least-privilege tests run it as nobody, who cannot enter t.TempDir()).
func observerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "ebpf-net-obs-e2e-"); buildErr != nil {
			return
		}
		if buildErr = os.Chmod(binDir, 0o755); buildErr != nil {
			return
		}
		p := filepath.Join(binDir, "ebpf-net-obs")
		if out, err := exec.Command("go", "build", "-o", p, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		binPath = p
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// observerProc is one run of the binary.
type observerProc struct {
	cmd     *exec.Cmd
	url     string
	out     *syncBuffer
	exited  chan struct{}
	waitErr error // valid once exited is closed
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startObserver runs the binary on addr with attr (nil: as the test, root)
// and stops it (SIGTERM, then SIGKILL) when the test ends.
func startObserver(t *testing.T, addr string, attr *syscall.SysProcAttr, args ...string) *observerProc {
	t.Helper()
	bin := observerBinary(t)
	// Other tests on the host may open thousands of connections: no cap on
	// series, so the test's own connection always has its own.
	cmd := exec.Command(bin, append([]string{"--listen-address", addr, "--flush-interval", "100ms",
		"--max-connection-series", "10000000"}, args...)...)
	cmd.Dir = filepath.Dir(bin)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"} // no KUBECONFIG, NODE_NAME
	cmd.SysProcAttr = attr
	p := &observerProc{cmd: cmd, url: "http://" + addr, out: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(15 * time.Second):
				cmd.Process.Kill()
				<-p.exited
			}
		}
		if t.Failed() {
			t.Logf("observer pid %d output:\n%s", cmd.Process.Pid, p.out)
		}
	})
	return p
}

// waitHealthy waits for /healthz to answer 200 and returns how long that took.
func (p *observerProc) waitHealthy(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	client := &http.Client{Timeout: time.Second}
	for time.Since(start) < limit {
		select {
		case <-p.exited:
			t.Fatalf("observer exited before it was healthy (%v):\n%s", p.waitErr, p.out)
		default:
		}
		if resp, err := client.Get(p.url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("/healthz not 200 within %s:\n%s", limit, p.out)
	return 0
}

// scrape reads /metrics.
func (p *observerProc) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(p.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// series are the metrics named name whose labels include want, each as its
// labels and value.
func series(fams map[string]*dto.MetricFamily, name string, want map[string]string) []sample {
	var out []sample
next:
	for _, m := range fams[name].GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		v := m.GetCounter().GetValue()
		if m.GetGauge() != nil {
			v = m.GetGauge().GetValue()
		}
		out = append(out, sample{have, v})
	}
	return out
}

type sample struct {
	labels map[string]string
	value  float64
}

// exchanged is one finished loopback connection as the test's own sockets
// measured it.
type exchanged struct {
	clientPort, serverPort int
	clientSent, serverSent int64 // each is what the other end received
}

// exchange makes one connection to ln: req bytes to the server, resp bytes
// back, both ends closed; it returns the ports and the bytes each side
// moved, as the applications counted them.
func exchange(t *testing.T, ln net.Listener, req, resp int) exchanged {
	t.Helper()
	type result struct {
		recv, sent int64
		err        error
	}
	srv := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srv <- result{err: err}
			return
		}
		defer c.Close()
		var r result
		if r.recv, r.err = io.Copy(io.Discard, c); r.err == nil {
			n, err := c.Write(bytes.Repeat([]byte{'s'}, resp))
			r.sent, r.err = int64(n), err
		}
		srv <- r
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.Write(bytes.Repeat([]byte{'c'}, req))
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.Copy(io.Discard, c)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	r := <-srv
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.recv != int64(n) || got != r.sent {
		t.Fatalf("the sockets disagree: client sent %d, server received %d; server sent %d, client received %d", n, r.recv, r.sent, got)
	}
	return exchanged{clientPort: c.LocalAddr().(*net.TCPAddr).Port, serverPort: ln.Addr().(*net.TCPAddr).Port,
		clientSent: int64(n), serverSent: r.sent}
}

// connSide is what the observer reports for one end of a connection.
type connSide struct {
	found      bool
	sent, recv float64
	pid, comm  string
}

func (s connSide) String() string {
	if !s.found {
		return "no series"
	}
	return fmt.Sprintf("sent=%v received=%v pid=%q process_name=%q", s.sent, s.recv, s.pid, s.comm)
}

// side reads one end (src port → dst port, both on 127.0.0.1) from fams.
func side(fams map[string]*dto.MetricFamily, src, dst int) connSide {
	want := map[string]string{"src_ip": "127.0.0.1", "src_port": strconv.Itoa(src), "dst_ip": "127.0.0.1", "dst_port": strconv.Itoa(dst)}
	s := series(fams, "ebpf_net_obs_connection_bytes_sent_total", want)
	r := series(fams, "ebpf_net_obs_connection_bytes_received_total", want)
	if len(s) != 1 || len(r) != 1 {
		return connSide{}
	}
	return connSide{true, s[0].value, r[0].value, s[0].labels["pid"], s[0].labels["process_name"]}
}

// connReport is both ends of an exchanged connection as the observer
// reports them.
type connReport struct{ client, server connSide }

// waitExact polls /metrics until both ends of x carry exactly the bytes the
// test's sockets moved and ok accepts the owners; it returns the last report.
func (p *observerProc) waitExact(t *testing.T, x exchanged, ok func(connReport) bool) connReport {
	t.Helper()
	var last connReport
	var fams map[string]*dto.MetricFamily
	// Seen within a second on an idle host; other tests' load may slow the
	// observer's reading down.
	start := time.Now()
	for deadline := start.Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		fams = p.scrape(t)
		last = connReport{side(fams, x.clientPort, x.serverPort), side(fams, x.serverPort, x.clientPort)}
		exact := last.client.found && last.server.found &&
			last.client.sent == float64(x.clientSent) && last.client.recv == float64(x.serverSent) &&
			last.server.sent == float64(x.serverSent) && last.server.recv == float64(x.clientSent)
		if exact && (ok == nil || ok(last)) {
			t.Logf("connection %d→%d reported exactly after %s", x.clientPort, x.serverPort, time.Since(start).Round(time.Millisecond))
			return last
		}
	}
	var events []string
	for _, e := range series(fams, "ebpf_net_obs_agent_events_total", nil) {
		events = append(events, fmt.Sprintf("%s=%v", e.labels["kind"], e.value))
	}
	t.Fatalf("connection %d→%d: the test sent %d and received %d bytes; the observer reports client %s, server %s (its events: %s)",
		x.clientPort, x.serverPort, x.clientSent, x.serverSent, last.client, last.server, strings.Join(events, " "))
	return last
}

// ownedByTest accepts a report whose both ends are owned by this process.
func ownedByTest(t *testing.T) func(connReport) bool {
	pid, comm := strconv.Itoa(os.Getpid()), selfComm(t)
	return func(r connReport) bool {
		return r.client.pid == pid && r.client.comm == comm && r.server.pid == pid && r.server.comm == comm
	}
}

func selfComm(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// loopbackListener is an IPv4 loopback listener closed when the test ends.
func loopbackListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// bpfIDs are the kernel objects a process holds file descriptors to.
type bpfIDs struct{ progs, maps, links map[uint32]bool }

// heldBPF reads /proc/PID/fdinfo: a program's, map's or link's fd shows
// its kernel ID (prog_id, map_id, link_id).
func heldBPF(pid int) (bpfIDs, error) {
	ids := bpfIDs{map[uint32]bool{}, map[uint32]bool{}, map[uint32]bool{}}
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ids, err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed in between
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(line, ":")
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil {
				continue
			}
			switch k {
			case "prog_id":
				ids.progs[uint32(n)] = true
			case "map_id":
				ids.maps[uint32(n)] = true
			case "link_id":
				ids.links[uint32(n)] = true
			}
		}
	}
	return ids, nil
}

// existing lists which of ids the kernel still has.
func existing(ids bpfIDs) []string {
	var out []string
	check := func(kind string, set map[uint32]bool, open func(uint32) (io.Closer, error)) {
		for id := range set {
			c, err := open(id)
			switch {
			case err == nil:
				c.Close()
				out = append(out, fmt.Sprintf("%s %d", kind, id))
			case !errors.Is(err, os.ErrNotExist):
				out = append(out, fmt.Sprintf("%s %d (%v)", kind, id, err))
			}
		}
	}
	check("program", ids.progs, func(id uint32) (io.Closer, error) { return ebpf.NewProgramFromID(ebpf.ProgramID(id)) })
	check("map", ids.maps, func(id uint32) (io.Closer, error) { return ebpf.NewMapFromID(ebpf.MapID(id)) })
	check("link", ids.links, func(id uint32) (io.Closer, error) { return link.NewFromID(link.ID(id)) })
	return out
}

const bpffs = "/sys/fs/bpf"

// pins lists every path under bpffs.
func pins(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	err := filepath.WalkDir(bpffs, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != bpffs {
			out[path] = true
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

// pinnedOf lists the pins that hold one of ids.
func pinnedOf(paths map[string]bool, ids bpfIDs) []string {
	var out []string
	for path := range paths {
		if p, err := ebpf.LoadPinnedProgram(path, nil); err == nil {
			if info, err := p.Info(); err == nil {
				if id, ok := info.ID(); ok && ids.progs[uint32(id)] {
					out = append(out, fmt.Sprintf("%s: program %d", path, id))
				}
			}
			p.Close()
		}
		if m, err := ebpf.LoadPinnedMap(path, nil); err == nil {
			if info, err := m.Info(); err == nil {
				if id, ok := info.ID(); ok && ids.maps[uint32(id)] {
					out = append(out, fmt.Sprintf("%s: map %d", path, id))
				}
			}
			m.Close()
		}
		if l, err := link.LoadPinnedLink(path, nil); err == nil {
			if info, err := l.Info(); err == nil && ids.links[uint32(info.ID)] {
				out = append(out, fmt.Sprintf("%s: link %d", path, info.ID))
			}
			l.Close()
		}
	}
	return out
}

// TestKill9MidLoadLeavesNothingAndRestarts: SIGKILL gives the observer no
// chance to clean up, so whatever it attached must be held only by its file
// descriptors (BPF links and programs, no pins, no legacy attachments that
// outlive the process). The kernel must drop every program, map and link
// of the killed observer within seconds, nothing of it may be pinned, and a
// second observer on the same address must be healthy at once and count a
// new connection's bytes exactly.
func TestKill9MidLoadLeavesNothingAndRestarts(t *testing.T) {
	privtest.Require(t)
	pinsBefore := pins(t)
	addr := freeAddr(t)
	first := startObserver(t, addr, nil)
	took := first.waitHealthy(t, 60*time.Second)
	t.Logf("first start healthy after %s", took.Round(time.Millisecond))

	ids, err := heldBPF(first.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// The observer's own: set_state, retransmit, recv_reset, send_reset,
	// sock_ops (attached), flush_closes, conns_live; its maps; its links.
	if len(ids.progs) < 5 || len(ids.maps) == 0 || len(ids.links) < 5 {
		t.Fatalf("observer holds %d programs, %d maps, %d links: want at least 5, 1, 5", len(ids.progs), len(ids.maps), len(ids.links))
	}
	if alive, all := len(existing(ids)), len(ids.progs)+len(ids.maps)+len(ids.links); alive != all {
		t.Fatalf("only %d of the observer's %d objects exist while it runs", alive, all)
	}
	t.Logf("observer pid %d holds programs %v, %d maps, links %v", first.cmd.Process.Pid, keys(ids.progs), len(ids.maps), keys(ids.links))

	// Connect/close load on loopback, running across the kill.
	echo := loopbackListener(t)
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	var ops atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("tcp4", echo.Addr().String())
				if err != nil {
					continue
				}
				if _, err := c.Write(buf); err == nil {
					io.ReadFull(c, buf)
				}
				c.Close()
				ops.Add(1)
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad)
	for deadline := time.Now().Add(10 * time.Second); ops.Load() < 2000 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	seen := series(first.scrape(t), "ebpf_net_obs_connections_opened_total", map[string]string{"service_port": strconv.Itoa(echo.Addr().(*net.TCPAddr).Port)})
	if len(seen) == 0 {
		t.Fatal("the observer has not seen the load before the kill")
	}

	atKill := ops.Load()
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	select {
	case <-first.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("SIGKILLed observer did not exit within 5s")
	}
	if ws, ok := first.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("observer ended with %v, not by SIGKILL", first.waitErr)
	}

	var left []string
	for deadline := killed.Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if left = existing(ids); len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		t.Fatalf("5s after SIGKILL the kernel still has the observer's %v", left)
	}
	t.Logf("%d connections before the kill, %d after; every program, map and link gone %s after SIGKILL",
		atKill, ops.Load()-atKill, time.Since(killed).Round(time.Millisecond))
	if ops.Load() == atKill {
		t.Error("the load did not run across the kill")
	}
	pinsAfter := pins(t)
	for p := range pinsAfter {
		if !pinsBefore[p] {
			t.Errorf("new under %s since the observer started: %s", bpffs, p)
		}
	}
	if ours := pinnedOf(pinsAfter, ids); len(ours) > 0 {
		t.Errorf("pinned objects of the killed observer: %v", ours)
	}
	stopLoad()

	second := startObserver(t, addr, nil)
	retook := second.waitHealthy(t, 10*time.Second)
	t.Logf("restart on %s healthy after %s", addr, retook.Round(time.Millisecond))
	ids2, err := heldBPF(second.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	for id := range ids2.progs {
		if ids.progs[id] {
			t.Errorf("restarted observer holds program %d of the killed one", id)
		}
	}
	x := exchange(t, loopbackListener(t), 12345, 54321)
	r := second.waitExact(t, x, ownedByTest(t))
	t.Logf("after restart: client %s; server %s", r.client, r.server)
}

func keys(m map[uint32]bool) []uint32 {
	out := make([]uint32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
