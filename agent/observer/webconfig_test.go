package observer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/config"
	"github.com/ebpf-net-obs/ebpf-net-obs/internal/privtest"
)

// selfSigned writes a self-signed ECDSA certificate for 127.0.0.1 and
// localhost (its own CA) and its key to dir/name.crt and dir/name.key.
func selfSigned(t *testing.T, dir, name string, usage x509.ExtKeyUsage) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: "ebpf-net-obs test " + name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile, cert
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startWeb runs the observer, as the binary does, with --web.config.file
// set to a file holding webYAML in dir; it returns the observer and its
// https:// URL. Health is for the caller to wait for: without credentials
// the observer answers nothing but 401 or a failed handshake.
func startWeb(t *testing.T, dir, webYAML string) (*running, string) {
	t.Helper()
	privtest.Require(t)
	path := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(path, []byte(webYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.FlushInterval = 100 * time.Millisecond
	cfg.WebConfigFile = path
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ob, err := Setup(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	r := serve(t, ob)
	return r, "https://" + strings.TrimPrefix(r.url, "http://")
}

// tlsClient trusts roots and presents certs.
func tlsClient(roots *x509.Certificate, certs ...tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	if roots != nil {
		pool.AddCert(roots)
	}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: certs},
			DisableKeepAlives: true, // every request is a new handshake
		},
	}
}

// httpGet returns the status and body of a GET, with basic auth when user is set.
func httpGet(c *http.Client, target, user, pass string) (int, string, http.Header, error) {
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		return 0, "", nil, err
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header, err
}

// waitHealthyWith polls /healthz with c until it answers 200 ok.
func waitHealthyWith(t *testing.T, c *http.Client, base, user, pass string) {
	t.Helper()
	eventually(t, 10*time.Second, "200 from "+base+"/healthz", func() (bool, string) {
		code, body, _, err := httpGet(c, base+"/healthz", user, pass)
		if err != nil {
			return false, err.Error()
		}
		return code == http.StatusOK && strings.TrimSpace(body) == "ok", fmt.Sprintf("%d %q", code, body)
	})
}

// TestWebConfigTLSBasicAuth: with --web.config.file (the exporter-toolkit
// format) asking for TLS and basic auth, a real Prometheus (Debian's
// package) scrapes the observer over https with the user's password and
// finds ebpf_net_obs_ series in its TSDB; a request without credentials, or
// with a wrong password, gets 401 on /metrics and /healthz alike; plain
// HTTP to the TLS port gets no metrics; a client that does not trust the
// certificate fails its handshake.
func TestWebConfigTLSBasicAuth(t *testing.T) {
	privtest.Require(t)
	bin := needBinary(t, "prometheus", "apt-get install -y prometheus (make deps-test does)")
	dir := t.TempDir()
	certFile, _, cert := selfSigned(t, dir, "server", x509.ExtKeyUsageServerAuth)
	const user, pass = "prometheus", "s3cret-for-the-test"
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	// Relative paths are relative to the web config file's directory.
	r, base := startWeb(t, dir, fmt.Sprintf(`tls_server_config:
  cert_file: server.crt
  key_file: server.key
basic_auth_users:
  %s: %s
`, user, hash))
	client := tlsClient(cert)
	waitHealthyWith(t, client, base, user, pass)

	// (2) No credentials, or the wrong ones: 401 on every path.
	for _, path := range []string{"/metrics", "/healthz"} {
		for _, cred := range [][2]string{{"", ""}, {user, "wrong"}, {"someone", pass}} {
			code, body, hdr, err := httpGet(client, base+path, cred[0], cred[1])
			if err != nil {
				t.Fatalf("%s as %q: %v", path, cred[0], err)
			}
			if code != http.StatusUnauthorized || strings.Contains(body, "ebpf_net_obs_") {
				t.Errorf("%s as %q/%q: %d, want 401 (body %.80q)", path, cred[0], cred[1], code, body)
			}
			if cred[0] == "" && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("%s without credentials: WWW-Authenticate %q, want Basic", path, hdr.Get("WWW-Authenticate"))
			}
		}
	}
	code, body, _, err := httpGet(client, base+"/metrics", user, pass)
	if err != nil || code != http.StatusOK || !strings.Contains(body, "ebpf_net_obs_") {
		t.Fatalf("/metrics with the password over https: %d, %v (body %.80q)", code, err, body)
	}

	// (3) Plain HTTP to the TLS port: no metrics, with or without the
	// password (Go's TLS server answers a plain request with a bare 400).
	plain := &http.Client{Timeout: 10 * time.Second}
	for _, u := range []string{"", user} {
		code, body, _, err := httpGet(plain, r.url+"/metrics", u, pass)
		if err == nil && (code != http.StatusBadRequest || strings.Contains(body, "ebpf_net_obs_")) {
			t.Errorf("plain HTTP to the TLS port (user %q): %d, want an error or 400 (body %.80q)", u, code, body)
		}
		t.Logf("plain HTTP to the TLS port (user %q): status %d, err %v, body %.60q", u, code, err, body)
	}
	// A client that does not trust the certificate.
	if _, _, _, err := httpGet(tlsClient(nil), base+"/metrics", user, pass); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: err %v, want a certificate error", err)
	}

	// (1) A real Prometheus scrapes it over https with basic auth.
	passFile := filepath.Join(dir, "password")
	if err := os.WriteFile(passFile, []byte(pass), 0o600); err != nil {
		t.Fatal(err)
	}
	promCfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(promCfg, fmt.Appendf(nil, `global:
  scrape_interval: 5s # as TestPrometheusScrapesExactBytes: a busy host's scrape can take seconds
  scrape_timeout: 5s
  evaluation_interval: 1s
scrape_configs:
  - job_name: ebpf-net-obs
    scheme: https
    tls_config:
      ca_file: %q
    basic_auth:
      username: %q
      password_file: %q
    static_configs:
      - targets: [%q]
`, certFile, user, passFile, strings.TrimPrefix(base, "https://")), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPrometheus(t, bin, "--config.file="+promCfg)
	tr := makeTraffic(t, 1)
	eventually(t, 60*time.Second, "a successful https scrape", func() (bool, string) {
		up, ok, detail := p.query(t, `up{job="ebpf-net-obs"}`)
		return ok && up == 1, detail
	})
	eventually(t, 60*time.Second, "ebpf_net_obs_ series in the TSDB", func() (bool, string) {
		n, ok, detail := p.query(t, `count({job="ebpf-net-obs",__name__=~"ebpf_net_obs_.+"})`)
		return ok && n > 0, detail
	})
	end := fmt.Sprintf(`src_port="%d",dst_port="%d"`, tr.clientPort[0], tr.serverPort)
	p.expectQuery(t, `ebpf_net_obs_connection_bytes_sent_total{`+end+`}`, float64(tr.req[0]))
	n, _, _ := p.query(t, `count({job="ebpf-net-obs",__name__=~"ebpf_net_obs_.+"})`)
	t.Logf("Prometheus scraped over https with basic auth: %v ebpf_net_obs_ series", n)
}

// TestWebConfigClientCertificates: with client_auth_type
// RequireAndVerifyClientCert, only a client presenting a certificate signed
// by client_ca_file gets /healthz and /metrics; one without a certificate,
// or with an unknown one, fails the handshake.
func TestWebConfigClientCertificates(t *testing.T) {
	privtest.Require(t)
	dir := t.TempDir()
	_, _, serverCert := selfSigned(t, dir, "server", x509.ExtKeyUsageServerAuth)
	clientCrt, clientKey, _ := selfSigned(t, dir, "client", x509.ExtKeyUsageClientAuth)
	otherDir := t.TempDir()
	otherCrt, otherKey, _ := selfSigned(t, otherDir, "stranger", x509.ExtKeyUsageClientAuth)
	_, base := startWeb(t, dir, `tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: client.crt
`)
	pair := func(c, k string) tls.Certificate {
		kp, err := tls.LoadX509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	good := tlsClient(serverCert, pair(clientCrt, clientKey))
	waitHealthyWith(t, good, base, "", "")
	code, body, _, err := httpGet(good, base+"/metrics", "", "")
	if err != nil || code != http.StatusOK || !strings.Contains(body, "ebpf_net_obs_") {
		t.Fatalf("/metrics with the client certificate: %d, %v (body %.80q)", code, err, body)
	}
	// Presented whatever CAs the server names (crypto/tls would otherwise
	// send no certificate at all, and this would test nothing new).
	stranger := tlsClient(serverCert)
	strangerPair := pair(otherCrt, otherKey)
	stranger.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &strangerPair, nil
	}
	for name, c := range map[string]*http.Client{
		"no client certificate":         tlsClient(serverCert),
		"an unknown client certificate": stranger,
	} {
		for _, path := range []string{"/metrics", "/healthz"} {
			code, body, _, err := httpGet(c, base+path, "", "")
			if err == nil {
				t.Errorf("%s, %s: %d (body %.80q), want a failed handshake", name, path, code, body)
			} else {
				t.Logf("%s, %s: %v", name, path, err)
			}
		}
	}
}
