package observer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// needBinary returns the path of a tool a real-backend test drives, or
// skips loudly without it; under CI=true a missing tool fails the test.
func needBinary(t *testing.T, path, how string) string {
	t.Helper()
	if p, err := exec.LookPath(path); err == nil {
		return p
	}
	msg := fmt.Sprintf("REAL-BACKEND TEST NOT RUN: %s not found; %s", path, how)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: this test must run in CI)")
	}
	t.Skip(msg)
	return ""
}

// prometheusServer is a Prometheus binary run for one test on a free
// loopback port with its own TSDB directory.
type prometheusServer struct {
	url string
}

// startPrometheus runs bin with args plus listen address and storage,
// and waits until it answers /-/ready.
func startPrometheus(t *testing.T, bin string, args ...string) *prometheusServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	var out bytes.Buffer
	cmd := exec.Command(bin, append(args, "--web.listen-address="+addr, "--storage.tsdb.path="+dir)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", bin, out.String())
		}
	})
	p := &prometheusServer{url: "http://" + addr}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(p.url + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
	}
	t.Fatalf("%s did not become ready on %s within 60s", bin, addr)
	return nil
}

// query runs an instant PromQL query and returns the value of its single
// sample; ok is false when the result holds no sample yet.
func (p *prometheusServer) query(t *testing.T, q string) (v float64, ok bool, detail string) {
	t.Helper()
	resp, err := http.Get(p.url + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, false, err.Error()
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, false, err.Error()
	}
	if body.Status != "success" {
		t.Fatalf("query %s: %s", q, body.Error)
	}
	switch n := len(body.Data.Result); {
	case n == 0:
		return 0, false, "no sample yet"
	case n > 1:
		t.Fatalf("query %s: %d series, want 1: %v", q, n, body.Data.Result)
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	v, err = strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("query %s: value %q: %v", q, s, err)
	}
	return v, true, fmt.Sprintf("%v = %s", body.Data.Result[0].Metric, s)
}

// expectQuery polls q until it returns want.
func (p *prometheusServer) expectQuery(t *testing.T, q string, want float64) {
	t.Helper()
	eventually(t, 60*time.Second, q, func() (bool, string) {
		v, ok, detail := p.query(t, q)
		return ok && v == want, fmt.Sprintf("want %v, last: %s", want, detail)
	})
}

// traffic is what the tests move through the observed host: n exchanges
// with a server on a fresh loopback port, each with its own byte counts.
type traffic struct {
	serverPort                 int
	clientPort                 []int
	req, resp                  []int
	totalReq, totalResp, conns int
}

func makeTraffic(t *testing.T, n int) traffic {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tr := traffic{serverPort: ln.Addr().(*net.TCPAddr).Port, conns: n}
	for i := range n {
		req, resp := 10007*(i+1)+i, 30011*(i+1)+3*i
		res := exchange(t, ln, func() (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) }, req, resp)
		if res.clientSent != int64(req) || res.serverRecv != int64(req) || res.serverSent != int64(resp) || res.clientRecv != int64(resp) {
			t.Fatalf("exchange %d moved %+v, want %d/%d", i, res, req, resp)
		}
		tr.clientPort = append(tr.clientPort, res.clientLocal.(*net.TCPAddr).Port)
		tr.req, tr.resp = append(tr.req, req), append(tr.resp, resp)
		tr.totalReq += req
		tr.totalResp += resp
	}
	return tr
}
