package deploy

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/ebpf-net-obs/ebpf-net-obs/agent/config"
	"github.com/ebpf-net-obs/ebpf-net-obs/agent/runstats"
)

// wantCaps is the capability set docs/metadata.md justifies, one by one.
var wantCaps = []corev1.Capability{"BPF", "PERFMON", "NET_ADMIN"}

type manifests struct {
	daemonSets   []appsv1.DaemonSet
	clusterRoles []rbacv1.ClusterRole
	bindings     []rbacv1.ClusterRoleBinding
	accounts     []corev1.ServiceAccount
	configMaps   []corev1.ConfigMap
	namespaces   []corev1.Namespace
	secrets      []corev1.Secret
}

// decodeStrict decodes one document into T, rejecting unknown fields: a
// misspelt or misplaced key would otherwise be silently dropped by a lax
// decoder while the API server rejects (or ignores) it.
func decodeStrict[T any](t *testing.T, where string, doc []byte) T {
	t.Helper()
	var v T
	if err := yaml.UnmarshalStrict(doc, &v); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return v
}

func load(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/*.yaml (%v)", err)
	}
	var m manifests
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m.add(t, f, b)
	}
	return m
}

// add decodes the documents of file f, held in b.
func (m *manifests) add(t *testing.T, f string, b []byte) {
	t.Helper()
	for i, doc := range bytes.Split(b, []byte("\n---\n")) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		where := f + " document " + string(rune('1'+i))
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		switch head.APIVersion + " " + head.Kind {
		case "apps/v1 DaemonSet":
			m.daemonSets = append(m.daemonSets, decodeStrict[appsv1.DaemonSet](t, where, doc))
		case "rbac.authorization.k8s.io/v1 ClusterRole":
			m.clusterRoles = append(m.clusterRoles, decodeStrict[rbacv1.ClusterRole](t, where, doc))
		case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
			m.bindings = append(m.bindings, decodeStrict[rbacv1.ClusterRoleBinding](t, where, doc))
		case "v1 ServiceAccount":
			m.accounts = append(m.accounts, decodeStrict[corev1.ServiceAccount](t, where, doc))
		case "v1 ConfigMap":
			m.configMaps = append(m.configMaps, decodeStrict[corev1.ConfigMap](t, where, doc))
		case "v1 Namespace":
			m.namespaces = append(m.namespaces, decodeStrict[corev1.Namespace](t, where, doc))
		case "v1 Secret":
			m.secrets = append(m.secrets, decodeStrict[corev1.Secret](t, where, doc))
		default:
			t.Fatalf("%s: unexpected %s %s (add it to this test)", where, head.APIVersion, head.Kind)
		}
	}
}

func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.SplitSeq(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(append(out, line...), '\n')
		}
	}
	return out
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := load(t)
	if len(m.daemonSets) != 1 || len(m.clusterRoles) != 1 || len(m.bindings) != 1 ||
		len(m.accounts) != 1 || len(m.configMaps) != 1 || len(m.namespaces) != 1 {
		t.Fatalf("want one each of DaemonSet, ClusterRole, ClusterRoleBinding, ServiceAccount, ConfigMap, Namespace; got %d %d %d %d %d %d",
			len(m.daemonSets), len(m.clusterRoles), len(m.bindings), len(m.accounts), len(m.configMaps), len(m.namespaces))
	}
	if len(m.secrets) != 0 {
		t.Errorf("%d Secrets: the web config Secret is an example, commented out", len(m.secrets))
	}
}

func TestStrictDecoderRejectsUnknownFields(t *testing.T) {
	// Misplaced here: readOnlyRootFilesystem belongs to a container's
	// securityContext. (Key case is not checked: encoding/json, under
	// sigs.k8s.io/yaml, matches field names case-insensitively.)
	doc := []byte("apiVersion: apps/v1\nkind: DaemonSet\nspec:\n  template:\n    spec:\n      readOnlyRootFilesystem: true\n")
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(doc, &ds); err == nil {
		t.Fatal("a misplaced field decoded without error")
	}
}

func TestRBACIsReadOnlyPods(t *testing.T) {
	m := load(t)
	cr := m.clusterRoles[0]
	if len(cr.Rules) != 1 {
		t.Fatalf("ClusterRole has %d rules, want 1", len(cr.Rules))
	}
	r := cr.Rules[0]
	if !slices.Equal(r.APIGroups, []string{""}) || !slices.Equal(r.Resources, []string{"pods"}) {
		t.Errorf("rule covers groups %q resources %q, want core pods only", r.APIGroups, r.Resources)
	}
	verbs := slices.Sorted(slices.Values(r.Verbs))
	if !slices.Equal(verbs, []string{"get", "list", "watch"}) {
		t.Errorf("verbs %q, want get, list, watch", verbs)
	}
	b, sa := m.bindings[0], m.accounts[0]
	if b.RoleRef.Name != cr.Name || b.RoleRef.Kind != "ClusterRole" {
		t.Errorf("binding refers to %s %s", b.RoleRef.Kind, b.RoleRef.Name)
	}
	if len(b.Subjects) != 1 || b.Subjects[0].Name != sa.Name || b.Subjects[0].Namespace != sa.Namespace {
		t.Errorf("binding subjects %+v, want the ServiceAccount %s/%s", b.Subjects, sa.Namespace, sa.Name)
	}
	ds := m.daemonSets[0]
	if ds.Spec.Template.Spec.ServiceAccountName != sa.Name || ds.Namespace != sa.Namespace {
		t.Errorf("DaemonSet runs as %s in %s", ds.Spec.Template.Spec.ServiceAccountName, ds.Namespace)
	}
}

func TestDaemonSetLeastPrivilege(t *testing.T) {
	m := load(t)
	ds := m.daemonSets[0]
	pod := ds.Spec.Template.Spec
	if !pod.HostPID || !pod.HostNetwork {
		t.Errorf("hostPID %v hostNetwork %v; both are needed (docs/metadata.md)", pod.HostPID, pod.HostNetwork)
	}
	if pod.HostIPC {
		t.Error("hostIPC is not needed")
	}
	if len(pod.InitContainers) != 0 {
		t.Error("init containers would need their own review")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != "ghcr.io/ebpf-net-obs/ebpf-net-obs:latest" {
		t.Errorf("image %s", c.Image)
	}
	if got := strings.Join(append(c.Command, c.Args...), " "); got != "/ebpf-net-obs --config /etc/ebpf-net-obs/config.yaml" {
		t.Errorf("command %q", got)
	}
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("no securityContext")
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Error("privileged must be set, to false")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem must be true")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Fatal("capabilities must drop ALL")
	}
	if !slices.Equal(sc.Capabilities.Add, wantCaps) {
		t.Errorf("capabilities add %v, want exactly %v (as docs/metadata.md justifies)", sc.Capabilities.Add, wantCaps)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("seccomp profile must be RuntimeDefault")
	}
	if pod.SecurityContext != nil && pod.SecurityContext.SeccompProfile != nil && pod.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeUnconfined {
		t.Error("pod-level seccomp is Unconfined")
	}

	// Every hostPath volume is mounted, and only read-only.
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
		if v.EmptyDir != nil {
			t.Errorf("volume %s: a writable emptyDir undoes readOnlyRootFilesystem; say why it is needed", v.Name)
		}
	}
	for _, vm := range c.VolumeMounts {
		if p, ok := hostPaths[vm.Name]; ok {
			if !vm.ReadOnly {
				t.Errorf("hostPath %s mounted writable at %s", p, vm.MountPath)
			}
			if vm.MountPropagation != nil && *vm.MountPropagation == corev1.MountPropagationBidirectional {
				t.Errorf("hostPath %s: Bidirectional propagation needs privileged", p)
			}
			delete(hostPaths, vm.Name)
		}
	}
	for name, p := range hostPaths {
		t.Errorf("hostPath volume %s (%s) is never mounted", name, p)
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil && (v.HostPath.Path == "/" || v.HostPath.Path == "/proc" || v.HostPath.Path == "/sys/fs/bpf" || v.HostPath.Path == "/sys/kernel/tracing") {
			t.Errorf("hostPath %s is not needed (docs/metadata.md)", v.HostPath.Path)
		}
	}

	// Metrics, health and the node name the resolver needs.
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9095 {
		t.Errorf("ports %+v, want 9095", c.Ports)
	}
	checkHealthProbes(t, m, c)
	var node bool
	for _, e := range c.Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			node = true
		}
	}
	if !node {
		t.Error("NODE_NAME must come from the downward API (spec.nodeName)")
	}
	req, lim := c.Resources.Requests, c.Resources.Limits
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := req[r]; !ok {
			t.Errorf("no %s request", r)
		}
		if _, ok := lim[r]; !ok {
			t.Errorf("no %s limit", r)
		}
	}
}

// checkHealthProbes: liveness and readiness both GET /healthz on the
// metrics port (it answers 503 when the observer stops flushing, reading or
// is detached), and liveness gives up only well after /healthz would: never
// on one slow flush.
func checkHealthProbes(t *testing.T, m manifests, c corev1.Container) {
	t.Helper()
	cfg := agentConfig(t, m)
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
	}{{"liveness", c.LivenessProbe}, {"readiness", c.ReadinessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != "/healthz" {
			t.Errorf("%s probe must GET /healthz", p.name)
			continue
		}
		if port := p.probe.HTTPGet.Port; port.String() != "metrics" && port.IntValue() != 9095 {
			t.Errorf("%s probe on port %s, want the metrics port", p.name, port.String())
		}
		if p.probe.TimeoutSeconds < 1 || p.probe.PeriodSeconds < 1 {
			t.Errorf("%s probe: timeout %ds, period %ds", p.name, p.probe.TimeoutSeconds, p.probe.PeriodSeconds)
		}
	}
	if l := c.LivenessProbe; l != nil {
		// /healthz turns 503 after 3 flush intervals without a flush.
		tolerated := time.Duration(l.PeriodSeconds*max(l.FailureThreshold, 1)) * time.Second
		if tolerated < 3*cfg.FlushInterval {
			t.Errorf("liveness restarts after %s of 503, less than 3 flush intervals (%s)", tolerated, 3*cfg.FlushInterval)
		}
	}
}

// agentConfig is the ConfigMap's config.yaml as the agent loads it.
func agentConfig(t *testing.T, m manifests) config.Config {
	t.Helper()
	if len(m.configMaps) != 1 {
		t.Fatalf("%d ConfigMaps, want 1", len(m.configMaps))
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(m.configMaps[0].Data["config.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load([]string{"--config", path}, io.Discard)
	if err != nil {
		t.Fatalf("the agent rejects the ConfigMap's config.yaml: %v", err)
	}
	return c
}

func TestConfigMapHoldsTheConfigFile(t *testing.T) {
	m := load(t)
	cfg, ok := m.configMaps[0].Data["config.yaml"]
	if !ok {
		t.Fatal("ConfigMap has no config.yaml")
	}
	// The agent's own loader (unknown keys rejected, values validated)
	// must accept the file, as the container's command line passes it.
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load([]string{"--config", path}, io.Discard)
	if err != nil {
		t.Fatalf("the agent rejects the ConfigMap's config.yaml: %v", err)
	}
	if c.ListenAddress != ":9095" {
		t.Errorf("listen-address %q, want :9095 (the container port)", c.ListenAddress)
	}
	// Switching the kernel's BPF statistics is machine-wide and needs
	// CAP_SYS_ADMIN, which the DaemonSet does not grant.
	if c.BPFStats != runstats.Off {
		t.Errorf("bpf-stats %q, want off", c.BPFStats)
	}
	var mounted bool
	for _, v := range m.daemonSets[0].Spec.Template.Spec.Volumes {
		mounted = mounted || (v.ConfigMap != nil && v.ConfigMap.Name == m.configMaps[0].Name)
	}
	if !mounted {
		t.Error("the ConfigMap is not mounted")
	}
}
