package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebpf-net-obs/ebpf-net-obs/vmtest/features"
)

func TestUsageErrors(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{nil, {"bogus"}, {"run", "--", "true"}, {"run", "--kernel", "6.1"}, {"fetch"}, {"matrix", "--kernels", ""}} {
		if code := run(ctx, args); code == 0 {
			t.Errorf("vmtest %v exited 0", args)
		}
	}
}

func TestFeaturesOut(t *testing.T) {
	out := filepath.Join(t.TempDir(), "f.json")
	if code := run(context.Background(), []string{"features", "--json", "--out", out}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := features.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if r.Kernel == "" || len(r.Checks) == 0 {
		t.Errorf("report = %+v", r)
	}
}

func TestReportNeedsSummaries(t *testing.T) {
	if code := run(context.Background(), []string{"report", "--out", t.TempDir()}); code == 0 {
		t.Error("report on an empty folder exited 0")
	}
}

func TestStringList(t *testing.T) {
	var s stringList
	_ = s.Set("a")
	_ = s.Set("b c")
	if strings.Join(s, "|") != "a|b c" || s.String() != "a,b c" {
		t.Errorf("stringList = %v", s)
	}
}
