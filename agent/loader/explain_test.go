package loader

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

func TestExplainNamesTheCause(t *testing.T) {
	rejected := &ebpf.VerifierError{Cause: unix.EACCES, Log: []string{"R2 type=sock_or_null expected=sock"}}
	for _, c := range []struct {
		name string
		err  error
		root bool
		want string
	}{
		{"verifier rejects for root", fmt.Errorf("load: %w", rejected), true, "rejected by this kernel's verifier"},
		{"verifier log for non-root", rejected, false, "insufficient privileges"},
		{"EPERM", unix.EPERM, false, "insufficient privileges"},
		{"EPERM as root", unix.EPERM, true, "insufficient privileges"},
		{"missing helper", fmt.Errorf("x: %w", ebpf.ErrNotSupported), true, "not supported by this kernel"},
	} {
		got := explainFor("load BPF programs", c.err, c.root)
		if !strings.Contains(got.Error(), c.want) {
			t.Errorf("%s: %q, want it to say %q", c.name, got, c.want)
		}
		for _, cause := range []error{unix.EACCES, unix.EPERM, ebpf.ErrNotSupported} {
			if errors.Is(c.err, cause) && !errors.Is(got, cause) {
				t.Errorf("%s: %q does not wrap its cause %v", c.name, got, cause)
			}
		}
	}
}
