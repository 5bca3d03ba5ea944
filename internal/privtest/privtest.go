// Package privtest gates tests that need root: they run for real as root,
// skip loudly otherwise, and never skip when CI=true (CI runs as root and a
// silent skip there would hide a broken observer).
package privtest

import (
	"os"
	"testing"
)

// Require skips t unless the process is root; under CI=true it fails instead.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "PRIVILEGED TEST NOT RUN: needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN); run `sudo make test`"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: privileged tests must run in CI)")
	}
	t.Skip(msg)
}
