package observer

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/config"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/mounts"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
)

// A client placed in a kubelet-style cgroup (systemd driver, containerd)
// with kubelet's /var/log/pods layout gets its container, pod and namespace
// on its connection's series and rollups.
func TestKubeletCgroupLabelsConnections(t *testing.T) {
	privtest.Require(t)
	cg2, err := mounts.Cgroup2()
	if err != nil {
		t.Fatal(err)
	}
	uid := fmt.Sprintf("8a7b3c2d-1e4f-4a6b-9c8d-%012d", os.Getpid())
	cid := fmt.Sprintf("%064x", os.Getpid())
	slice := filepath.Join(cg2, "kubepods.slice", "kubepods-besteffort.slice",
		"kubepods-besteffort-pod"+underscore(uid)+".slice")
	scope := filepath.Join(slice, "cri-containerd-"+cid+".scope")
	if err := os.MkdirAll(scope, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, d := range []string{scope, slice, filepath.Dir(slice), filepath.Dir(filepath.Dir(slice))} {
			os.Remove(d) // leaf first; fails harmlessly if a dir is shared
		}
	})
	logs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(logs, "shop_checkout-7f9c_"+uid), 0o755); err != nil {
		t.Fatal(err)
	}

	ob := start(t, func(c *config.Config) { c.PodLogDir = logs })
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		got <- n
	}()
	// The client moves itself into the container's cgroup, then connects.
	port := ln.Addr().(*net.TCPAddr).Port
	script := fmt.Sprintf(`echo $$ > %s/cgroup.procs && exec 3<>/dev/tcp/127.0.0.1/%d && printf hello >&3 && exec 3>&-`, scope, port)
	if out, err := exec.Command("bash", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("client in container cgroup: %v: %s", err, out)
	}
	if n := <-got; n != 5 {
		t.Fatalf("server read %d bytes", n)
	}
	want := map[string]string{"dst_port": strconv.Itoa(port), "container_id": cid, "pod": "checkout-7f9c", "namespace": "shop"}
	eventually(t, 5*time.Second, "workload labels", func() (bool, string) {
		v := ob.value(t, "ebpf_net_obs_connection_bytes_sent_total", want)
		r := ob.value(t, "ebpf_net_obs_connections_opened_total", map[string]string{"service_port": strconv.Itoa(port), "direction": "active", "container_id": cid, "pod": "checkout-7f9c", "namespace": "shop"})
		return v == 5 && r == 1, fmt.Sprintf("series bytes=%v, rollup opened=%v", v, r)
	})
	// The server is a host process: empty labels, not guesses.
	host := map[string]string{"src_port": strconv.Itoa(port), "container_id": "", "pod": "", "namespace": ""}
	if v := ob.value(t, "ebpf_net_obs_connection_bytes_received_total", host); v != 5 {
		t.Errorf("host server's connection: bytes received %v with empty workload labels, want 5", v)
	}
}

func underscore(uid string) string {
	b := []byte(uid)
	for i, c := range b {
		if c == '-' {
			b[i] = '_'
		}
	}
	return string(b)
}
