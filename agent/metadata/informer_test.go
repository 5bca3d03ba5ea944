package metadata

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func testPod(ns, name, uid, node string, hostNet bool, ips ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)},
		Spec:       corev1.PodSpec{NodeName: node, HostNetwork: hostNet},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	return p
}

// eventually polls cond for up to 5 s: informer events arrive asynchronously.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestInformerPath runs the informer code path against client-go's fake
// clientset (see docs/metadata.md for why not a real kube-apiserver).
func TestInformerPath(t *testing.T) {
	const node = "node-a"
	other := "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
	hostNetUID := "11111111-2222-4333-8444-555555555555"
	client := fake.NewClientset(
		testPod("shop", "checkout-7d9f", testPodUID, node, false, "10.244.1.7", "fd00::7"),
		testPod("kube-system", "kube-proxy-x", hostNetUID, node, true, "192.0.2.10"),
		testPod("shop", "elsewhere", other, "node-b", false, "10.244.2.9"),
	)
	cg, logs := t.TempDir(), t.TempDir()
	ctr := filepath.Join(podDirPath, "cri-containerd-"+testCID+".scope")
	mkdirs(t, cg, ctr)
	// A stale log directory must not be consulted when the API is in use.
	mkdirs(t, logs, "wrong_name_"+testPodUID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := New(ctx, Options{CgroupRoot: cg, PodLogDir: logs, Client: client, NodeName: node})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// The list and watch asked the server for this node's pods only.
	var sawList, sawWatch bool
	for _, a := range client.Actions() {
		switch a := a.(type) {
		case k8stesting.ListAction:
			sawList = true
			if got := a.GetListRestrictions().Fields.String(); got != "spec.nodeName="+node {
				t.Errorf("list field selector %q", got)
			}
		case k8stesting.WatchAction:
			sawWatch = true
			if got := a.GetWatchRestrictions().Fields.String(); got != "spec.nodeName="+node {
				t.Errorf("watch field selector %q", got)
			}
		}
	}
	if !sawList {
		t.Error("no pod list was issued")
	}
	_ = sawWatch // the watch may start after sync; checked when present

	id := inode(t, filepath.Join(cg, ctr))
	want := Workload{ContainerID: testCID, PodUID: testPodUID, Pod: "checkout-7d9f", Namespace: "shop"}
	if w := r.ByCgroupID(id); w != want {
		t.Fatalf("ByCgroupID = %+v, want %+v", w, want)
	}
	for _, ip := range []string{"10.244.1.7", "fd00::7", "::ffff:10.244.1.7"} {
		ns, pod, ok := r.PodByIP(netip.MustParseAddr(ip))
		if !ok || ns != "shop" || pod != "checkout-7d9f" {
			t.Errorf("PodByIP(%s) = %q %q %v", ip, ns, pod, ok)
		}
	}
	if _, _, ok := r.PodByIP(netip.MustParseAddr("192.0.2.10")); ok {
		t.Error("a host-network pod claimed the node's address")
	}
	if _, _, ok := r.PodByIP(netip.MustParseAddr("10.244.2.9")); ok {
		t.Error("a pod of another node was stored (the node check must hold even if the server ignores the selector)")
	}

	// A new pod reuses a deleted pod's IP; then the old pod is deleted.
	pods := client.CoreV1().Pods("shop")
	newUID := "22222222-3333-4444-8555-666666666666"
	if _, err := pods.Create(ctx, testPod("shop", "cart-1", newUID, node, false, "10.244.1.7"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new pod to own the IP", func() bool {
		_, pod, _ := r.PodByIP(netip.MustParseAddr("10.244.1.7"))
		return pod == "cart-1"
	})
	if err := pods.Delete(ctx, "checkout-7d9f", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deletion", func() bool { return r.ByCgroupID(id).Pod == "" })
	if w := r.ByCgroupID(id); w != (Workload{ContainerID: testCID, PodUID: testPodUID}) {
		t.Errorf("after deletion: %+v", w)
	}
	if _, pod, ok := r.PodByIP(netip.MustParseAddr("10.244.1.7")); !ok || pod != "cart-1" {
		t.Errorf("deleting the old pod took the new pod's IP: %q %v", pod, ok)
	}
	if _, _, ok := r.PodByIP(netip.MustParseAddr("fd00::7")); ok {
		t.Error("a deleted pod's IP still resolves")
	}

	// A finished pod releases its IP.
	done := testPod("shop", "cart-1", newUID, node, false, "10.244.1.7")
	done.Status.Phase = corev1.PodSucceeded
	if _, err := pods.UpdateStatus(ctx, done, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the finished pod to release its IP", func() bool {
		_, _, ok := r.PodByIP(netip.MustParseAddr("10.244.1.7"))
		return !ok
	})
}

func TestInformerNeedsNodeName(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	_, err := New(context.Background(), Options{CgroupRoot: t.TempDir(), Client: fake.NewClientset()})
	if err == nil {
		t.Fatal("New without a node name succeeded")
	}
}

func TestInformerSyncTimeout(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	// An API server address where nothing listens: the list never succeeds.
	cfg := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := New(ctx, Options{CgroupRoot: t.TempDir(), Kubeconfig: kc, NodeName: "n"})
	if err == nil {
		t.Fatal("New against an unreachable API server succeeded")
	}
	t.Logf("error as the user sees it: %v", err)
}
