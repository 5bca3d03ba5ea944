package metadata

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"sync"
)

// maxPods bounds the pod store. Kubelet's default is 110 pods per node and
// its hard ceiling is a few hundred; entries beyond this are dropped rather
// than letting a misconfigured field selector (a whole cluster's pods) grow
// the agent without limit.
const maxPods = 4096

type podMeta struct {
	namespace, name string
}

// podStore maps pod UIDs to names, and (when fed by the informer) pod IPs
// to pod UIDs. Reads are the hot path and take only a read lock.
type podStore struct {
	mu    sync.RWMutex
	byUID map[string]podMeta
	byIP  map[netip.Addr]string // pod IP -> pod UID; host-network pods never enter
	ipsOf map[string][]netip.Addr
}

func newPodStore() *podStore {
	return &podStore{byUID: map[string]podMeta{}, byIP: map[netip.Addr]string{}, ipsOf: map[string][]netip.Addr{}}
}

func (s *podStore) get(uid string) (podMeta, bool) {
	s.mu.RLock()
	m, ok := s.byUID[uid]
	s.mu.RUnlock()
	return m, ok
}

func (s *podStore) byAddr(ip netip.Addr) (podMeta, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	uid, ok := s.byIP[ip.Unmap()]
	if !ok {
		return podMeta{}, false
	}
	m, ok := s.byUID[uid]
	return m, ok
}

// put records a pod and replaces its IPs. An IP already owned by another
// pod is taken over: the newer event is the live owner (IPs are reused
// only after the old pod released them).
func (s *podStore) put(uid string, m podMeta, ips []netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byUID[uid]; !ok && len(s.byUID) >= maxPods {
		return
	}
	s.byUID[uid] = m
	s.dropIPsLocked(uid)
	for _, ip := range ips {
		s.byIP[ip] = uid
	}
	if len(ips) > 0 {
		s.ipsOf[uid] = ips
	}
}

func (s *podStore) delete(uid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byUID, uid)
	s.dropIPsLocked(uid)
}

// dropIPsLocked forgets uid's IPs, leaving any that another pod has taken.
func (s *podStore) dropIPsLocked(uid string) {
	for _, ip := range s.ipsOf[uid] {
		if s.byIP[ip] == uid {
			delete(s.byIP, ip)
		}
	}
	delete(s.ipsOf, uid)
}

// replaceNames swaps in a complete UID -> name map (a pod log directory
// rescan): pods whose directory vanished are gone afterwards.
func (s *podStore) replaceNames(m map[string]podMeta) {
	s.mu.Lock()
	s.byUID = m
	s.mu.Unlock()
}

// scanPodLogDir reads kubelet's /var/log/pods, whose entries are named
// <namespace>_<pod>_<uid> (neither names nor UIDs may contain '_').
func scanPodLogDir(dir string) (map[string]podMeta, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return map[string]podMeta{}, nil // no pods on this node (yet)
		}
		return nil, fmt.Errorf("scan pod log directory %s: %w", dir, err)
	}
	pods := make(map[string]podMeta, len(entries))
	for _, e := range entries {
		if !e.IsDir() || len(pods) >= maxPods {
			continue
		}
		ns, name, uid, ok := parsePodLogDirName(e.Name())
		if !ok {
			continue
		}
		pods[uid] = podMeta{namespace: ns, name: name}
	}
	return pods, nil
}

func parsePodLogDirName(s string) (ns, name, uid string, ok bool) {
	parts := strings.Split(s, "_")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || !validPodUID(parts[2]) {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}
