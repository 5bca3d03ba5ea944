// Package matrix runs the feature probe, the observer's tests and a bench
// smoke run inside each kernel (and optionally on the host) and writes
// results/kernels/<release>/ plus a comparison report and figure.
package matrix

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// Step statuses.
const (
	StatusPass         = "pass"
	StatusFail         = "fail"
	StatusTimeout      = "timeout"
	StatusNotAvailable = "not available"
	StatusNotRun       = "not run"
)

// Step is one thing run inside a kernel.
type Step struct {
	Name     string  `json:"name"`
	Command  string  `json:"command"`
	Status   string  `json:"status"`
	ExitCode int     `json:"exit_code"`
	Seconds  float64 `json:"seconds"`
	Detail   string  `json:"detail,omitempty"`
}

// Summary is results/kernels/<release>/summary.json.
type Summary struct {
	Requested      string `json:"requested"` // the --kernels entry, or "host"
	Release        string `json:"release"`
	Host           bool   `json:"host"`
	Suite          string `json:"suite,omitempty"`
	Package        string `json:"package,omitempty"`
	PackageVersion string `json:"package_version,omitempty"`
	Accel          string `json:"accel"` // tcg, kvm or host
	AccelReason    string `json:"accel_reason,omitempty"`
	CPUs           int    `json:"cpus,omitempty"`
	Memory         string `json:"memory,omitempty"`
	// BootSeconds is from starting virtme-ng to the guest script's first
	// line; TotalSeconds the whole boot including every step.
	BootSeconds  float64 `json:"boot_seconds"`
	TotalSeconds float64 `json:"total_seconds"`
	ExitCode     int     `json:"exit_code"`
	TimedOut     bool    `json:"timed_out"`
	Error        string  `json:"error,omitempty"`
	Steps        []Step  `json:"steps"`
	// FeaturesMissing copies features.json's "missing" list.
	FeaturesMissing []string `json:"features_missing"`
	// BenchResults is the bench results.json path relative to the kernel's
	// folder, "" when the bench did not produce one.
	BenchResults string `json:"bench_results"`
	StartedAt    string `json:"started_at"`
}

// OK reports whether every step that ran passed.
func (s *Summary) OK() bool {
	if s.Error != "" || s.TimedOut {
		return false
	}
	for _, st := range s.Steps {
		if st.Status == StatusFail || st.Status == StatusTimeout {
			return false
		}
	}
	return true
}

// Step returns the named step (nil when absent).
func (s *Summary) Step(name string) *Step {
	for i := range s.Steps {
		if s.Steps[i].Name == name {
			return &s.Steps[i]
		}
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
