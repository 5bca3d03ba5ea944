// Package deploy holds the Kubernetes manifests of ebpf-net-obs
// (daemonset.yaml) and, in its test, the checks that keep them strict and
// least-privileged. It has no code of its own.
package deploy
