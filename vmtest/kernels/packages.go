package kernels

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Package is one stanza of a Debian Packages index (the fields vmtest uses).
type Package struct {
	Name     string `json:"package"`
	Version  string `json:"version"`
	Filename string `json:"filename,omitempty"`
	Size     string `json:"size,omitempty"`
	SHA256   string `json:"sha256,omitempty"`
	Depends  string `json:"depends,omitempty"`
}

// Parts are the packages that together make the kernel: the image package
// itself plus, where Debian splits it (sid's 7.x: a linux-image-<release>
// that only depends on linux-binary-<release> with vmlinuz and
// linux-modules-<release>), the parts named in its Depends with the release.
func (c Candidate) Parts() []Package {
	parts := []Package{c.Package}
	for _, dep := range strings.Split(c.Depends, ",") {
		dep = strings.TrimSpace(dep)
		if strings.Contains(dep, "|") {
			continue
		}
		name, rest, _ := strings.Cut(dep, " ")
		ok := false
		for _, kind := range []string{"linux-binary-", "linux-modules-", "linux-base-"} {
			if name == kind+c.Release || name == kind+c.Release+"-unsigned" {
				ok = true
			}
		}
		if !ok {
			continue
		}
		version := c.Version
		if v, found := strings.CutPrefix(strings.TrimSpace(rest), "(= "); found {
			version = strings.TrimSuffix(v, ")")
		}
		parts = append(parts, Package{Name: name, Version: version})
	}
	return parts
}

// ParsePackages reads a Debian Packages index. Continuation lines and the
// fields vmtest does not use are skipped.
func ParsePackages(r io.Reader) ([]Package, error) {
	var out []Package
	var cur Package
	flush := func() {
		if cur.Name != "" {
			out = append(out, cur)
		}
		cur = Package{}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "Package":
			cur.Name = val
		case "Version":
			cur.Version = val
		case "Filename":
			cur.Filename = val
		case "Size":
			cur.Size = val
		case "SHA256":
			cur.SHA256 = val
		case "Depends":
			cur.Depends = val
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read Packages index: %w", err)
	}
	return out, nil
}

// A generic amd64 kernel image: linux-image-<release>[-unsigned] where release
// is <upstream>[-<abi>]-amd64 and not a cloud or rt flavour (cloud kernels
// lack 9p, which virtme-ng needs). Debian ≤ trixie names the unsigned image
// "-unsigned"; sid (7.x) ships only "linux-image-<release>".
var imageRe = regexp.MustCompile(`^linux-image-([0-9]+\.[0-9]+[^-]*(?:-[0-9][^-]*)?-amd64)(-unsigned)?$`)

// Candidate is a kernel image package with the release it installs.
type Candidate struct {
	Package
	Release  string `json:"release"`
	Unsigned bool   `json:"unsigned"`
}

// ReleaseOf returns the kernel release a generic amd64 image package
// installs, or "" when name is not such a package.
func ReleaseOf(name string) (release string, unsigned bool) {
	m := imageRe.FindStringSubmatch(name)
	if m == nil {
		return "", false
	}
	return m[1], m[2] != ""
}

// MatchesPrefix reports whether release belongs to the version prefix: the
// prefix must end at a component boundary, so "6.1" matches "6.1.0-47-amd64"
// but not "6.12.57+deb13-amd64", and "7" matches "7.2.13+deb14-amd64".
func MatchesPrefix(release, prefix string) bool {
	if prefix == "" || !strings.HasPrefix(release, prefix) {
		return false
	}
	if len(release) == len(prefix) {
		return true
	}
	next := release[len(prefix)]
	return !isDigit(next)
}

// Resolve picks the newest generic amd64 image whose release starts with
// prefix. Between the signed and "-unsigned" package of one release it takes
// the unsigned one (the one seen to boot under virtme-ng here; both carry the same image).
func Resolve(pkgs []Package, prefix string) (Candidate, error) {
	var best Candidate
	found := false
	for _, p := range pkgs {
		rel, unsigned := ReleaseOf(p.Name)
		if rel == "" || !MatchesPrefix(rel, prefix) {
			continue
		}
		c := Candidate{Package: p, Release: rel, Unsigned: unsigned}
		if !found {
			best, found = c, true
			continue
		}
		switch cmp := CompareVersions(c.Version, best.Version); {
		case cmp > 0:
			best = c
		case cmp == 0 && c.Release == best.Release && c.Unsigned && !best.Unsigned:
			best = c
		}
	}
	if !found {
		return Candidate{}, fmt.Errorf("no linux-image-%s*-amd64[-unsigned] package in the index", prefix)
	}
	return best, nil
}
