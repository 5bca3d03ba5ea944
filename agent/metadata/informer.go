package metadata

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeClient returns a client from, in order: an injected client, the
// kubeconfig file (Options.Kubeconfig, then $KUBECONFIG), the in-cluster
// service account. It returns nil, nil when none exists: the caller falls
// back to the node-local pod log directories.
func kubeClient(o Options) (kubernetes.Interface, error) {
	if o.Client != nil {
		return o.Client, nil
	}
	var cfg *rest.Config
	var err error
	path := o.Kubeconfig
	if path == "" {
		path = os.Getenv("KUBECONFIG")
	}
	switch {
	case path != "":
		cfg, err = clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig %s: %w", path, err)
		}
	default:
		cfg, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("in-cluster Kubernetes config: %w (is the service account token mounted?)", err)
		}
	}
	cfg.UserAgent = "ebpf-net-obs"
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return c, nil
}

// startPodInformer runs a shared informer over this node's pods that keeps
// store current, and waits for its first list to complete or ctx to end.
// The returned stop function ends it.
func startPodInformer(ctx context.Context, client kubernetes.Interface, node string, store *podStore) (stop func(), err error) {
	selector := fields.OneTermEqualSelector("spec.nodeName", node).String()
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.FieldSelector = selector }))
	inf := factory.Core().V1().Pods().Informer()
	// The informer's own cache holds every object it sees; keep only what
	// the resolver reads so a node's pods cost a few hundred bytes each.
	if err := inf.SetTransform(slimPod); err != nil {
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { storePod(store, node, obj) },
		UpdateFunc: func(_, obj any) { storePod(store, node, obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				store.delete(string(p.UID))
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	done := make(chan struct{})
	factory.Start(done)
	stop = func() { close(done); factory.Shutdown() }
	// The registration's HasSynced, not the informer's: the informer's says
	// its own cache is filled, this one that our handler has seen every pod
	// of the first list (a slow machine showed the difference).
	if !cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		stop()
		return nil, fmt.Errorf("pod informer for node %q did not sync: %w (check the API server address and that the service account may list and watch pods)", node, context.Cause(ctx))
	}
	return stop, nil
}

func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // tombstones pass through
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion},
		Spec:       corev1.PodSpec{NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork},
		Status:     corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}, nil
}

func storePod(store *podStore, node string, obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	// The field selector already limits the watch to this node; checking
	// again keeps a server that ignores it from filling the store.
	if p.Spec.NodeName != node {
		store.delete(string(p.UID))
		return
	}
	store.put(string(p.UID), podMeta{namespace: p.Namespace, name: p.Name}, podIPs(p))
}

// podIPs returns the addresses that identify p as a peer. Host-network pods
// share the node's address, and finished pods have released theirs, so
// neither may claim an IP.
func podIPs(p *corev1.Pod) []netip.Addr {
	if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return nil
	}
	var ips []netip.Addr
	add := func(s string) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return
		}
		a = a.Unmap()
		for _, have := range ips {
			if have == a {
				return
			}
		}
		ips = append(ips, a)
	}
	for _, ip := range p.Status.PodIPs {
		add(ip.IP)
	}
	if p.Status.PodIP != "" {
		add(p.Status.PodIP)
	}
	return ips
}
