package deploy

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// uncommentWebConfig returns src with every "web config:" example block
// uncommented, and how many lines each block uncommented. A block is
// introduced by a comment starting "# web config:" whose sentence runs to
// the first comment line ending in "."; the comment lines after it, up to
// the first line that is not a comment, are the example, each losing its
// first "# ".
func uncommentWebConfig(src []byte) ([]byte, []int) {
	const (
		outside = iota
		explaining
		example
	)
	state := outside
	var blocks []int
	lines := strings.Split(string(src), "\n")
	for i, line := range lines {
		trimmed := strings.TrimSpace(line)
		comment := strings.HasPrefix(trimmed, "#")
		switch {
		case strings.HasPrefix(trimmed, "# web config:"):
			blocks = append(blocks, 0)
			state = explaining
		case state == explaining && comment:
		case state == example && comment:
			indent := line[:len(line)-len(strings.TrimLeft(line, " "))]
			code := strings.TrimPrefix(strings.TrimPrefix(trimmed, "#"), " ")
			lines[i] = indent + code
			blocks[len(blocks)-1]++
			continue
		default:
			state = outside
			continue
		}
		if strings.HasSuffix(trimmed, ".") {
			state = example
		}
	}
	return []byte(strings.Join(lines, "\n")), blocks
}

// TestWebConfigExample: the commented web config example (a Secret, its
// volume and mount, --web.config.file, HTTPS probes with basic auth, the
// scrape scheme), once uncommented, decodes strictly and fits together:
// the flag names a file the Secret holds where the volume mounts it, the
// web config's certificate and key are files of the Secret, and the probes'
// user is one of its basic_auth_users.
func TestWebConfigExample(t *testing.T) {
	src, err := os.ReadFile("daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	on, blocks := uncommentWebConfig(src)
	// args, the scrape scheme, two probes, the mount, the volume, the Secret.
	if len(blocks) != 7 {
		t.Errorf("%d web config blocks, want 7: %v", len(blocks), blocks)
	}
	for i, n := range blocks {
		if n == 0 {
			t.Errorf("web config block %d uncomments nothing (does its explanation end in a full stop?)", i+1)
		}
	}
	var m manifests
	m.add(t, "daemonset.yaml with the web config uncommented", on)
	if len(m.secrets) != 1 || len(m.daemonSets) != 1 {
		t.Fatalf("%d Secrets and %d DaemonSets, want one of each", len(m.secrets), len(m.daemonSets))
	}
	sec, ds := m.secrets[0], m.daemonSets[0]
	if sec.Namespace != ds.Namespace {
		t.Errorf("Secret in %q, DaemonSet in %q", sec.Namespace, ds.Namespace)
	}
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]

	var path string
	args := append(append([]string{}, c.Command...), c.Args...)
	for i, a := range args {
		if a == "--web.config.file" && i+1 < len(args) {
			path = args[i+1]
		} else if v, ok := strings.CutPrefix(a, "--web.config.file="); ok {
			path = v
		}
	}
	if path == "" {
		t.Fatalf("no --web.config.file in %q", args)
	}
	var volume string
	for _, v := range pod.Volumes {
		if v.Secret != nil && v.Secret.SecretName == sec.Name {
			volume = v.Name
		}
	}
	var mounted bool
	for _, vm := range c.VolumeMounts {
		mounted = mounted || (vm.Name == volume && vm.ReadOnly && filepath.Join(vm.MountPath, filepath.Base(path)) == path)
	}
	if volume == "" || !mounted {
		t.Errorf("the Secret %s is not mounted read-only where --web.config.file %s points (volume %q)", sec.Name, path, volume)
	}
	web, ok := sec.StringData[filepath.Base(path)]
	if !ok {
		t.Fatalf("the Secret has no %s", filepath.Base(path))
	}
	var wc struct {
		TLS struct {
			CertFile string `json:"cert_file"`
			KeyFile  string `json:"key_file"`
		} `json:"tls_server_config"`
		Users map[string]string `json:"basic_auth_users"`
	}
	if err := yaml.UnmarshalStrict([]byte(web), &wc); err != nil {
		t.Fatalf("the Secret's %s: %v", filepath.Base(path), err)
	}
	for _, f := range []string{wc.TLS.CertFile, wc.TLS.KeyFile} {
		if _, ok := sec.StringData[f]; f == "" || !ok {
			t.Errorf("web config names %q, which the Secret does not hold", f)
		}
	}

	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("%s probe: want httpGet with scheme HTTPS", name)
			continue
		}
		var user string
		for _, h := range p.HTTPGet.HTTPHeaders {
			if v, ok := strings.CutPrefix(h.Value, "Basic "); ok && h.Name == "Authorization" {
				up, err := base64.StdEncoding.DecodeString(v)
				if err != nil {
					t.Errorf("%s probe: Authorization %q: %v", name, h.Value, err)
				}
				user, _, _ = strings.Cut(string(up), ":")
			}
		}
		if _, ok := wc.Users[user]; !ok {
			t.Errorf("%s probe: basic auth user %q is not in basic_auth_users", name, user)
		}
	}
	if s := ds.Spec.Template.Annotations["prometheus.io/scheme"]; s != "https" {
		t.Errorf("prometheus.io/scheme %q, want https", s)
	}
	checkHealthProbes(t, m, c)
}
