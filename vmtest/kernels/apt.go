package kernels

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Mirrors of Debian's archive. Overridable for a local mirror.
var (
	Mirror         = "http://deb.debian.org/debian"
	SecurityMirror = "http://deb.debian.org/debian-security"
	Keyring        = "/usr/share/keyrings/debian-archive-keyring.gpg"
)

// Suite is a Debian release whose kernels vmtest can fetch.
type Suite struct {
	Name string
	// Security is true when the suite has a -security pocket, which carries
	// the newest kernel ABI of a stable release.
	Security bool
}

// Suites vmtest knows, oldest first.
var Suites = []Suite{
	{Name: "bullseye", Security: true},
	{Name: "bookworm", Security: true},
	{Name: "trixie", Security: true},
	{Name: "sid"},
}

// SuiteFor names the Debian suite whose generic kernel matches the version
// prefix: 5.10 bullseye, 6.1 bookworm, 6.12 trixie, anything else sid.
func SuiteFor(prefix string) string {
	switch {
	case MatchesPrefix(prefix, "5.10"):
		return "bullseye"
	case MatchesPrefix(prefix, "6.1"):
		return "bookworm"
	case MatchesPrefix(prefix, "6.12"):
		return "trixie"
	}
	return "sid"
}

// LookupSuite returns the known suite called name.
func LookupSuite(name string) (Suite, error) {
	for _, s := range Suites {
		if s.Name == name {
			return s, nil
		}
	}
	return Suite{}, fmt.Errorf("unknown Debian suite %q (known: bullseye, bookworm, trixie, sid)", name)
}

// SourcesList is the private one-line-per-source apt list for a suite.
func SourcesList(s Suite) string {
	var b strings.Builder
	fmt.Fprintf(&b, "deb [signed-by=%s] %s %s main\n", Keyring, Mirror, s.Name)
	if s.Security {
		fmt.Fprintf(&b, "deb [signed-by=%s] %s %s-security main\n", Keyring, SecurityMirror, s.Name)
	}
	return b.String()
}

// AptDirs is a private apt state for one suite under the cache; nothing of
// the system's apt configuration (sources, lists, archives) is read or written
// except the dpkg status file, which apt only reads.
type AptDirs struct {
	Root string // <cache>/apt/<suite>
}

// SourcesFile, ListsDir and CacheDir are the private apt paths.
func (d AptDirs) SourcesFile() string { return filepath.Join(d.Root, "sources.list") }
func (d AptDirs) ListsDir() string    { return filepath.Join(d.Root, "lists") }
func (d AptDirs) CacheDir() string    { return filepath.Join(d.Root, "cache") }

// AptArgs are the -o options that point apt-get at the private state.
func (d AptDirs) AptArgs() []string {
	return []string{
		"-o", "Dir::Etc::SourceList=" + d.SourcesFile(),
		"-o", "Dir::Etc::SourceParts=/dev/null",
		"-o", "Dir::State::Lists=" + d.ListsDir(),
		"-o", "Dir::Cache=" + d.CacheDir(),
		"-o", "Dir::Cache::Archives=" + filepath.Join(d.CacheDir(), "archives"),
		"-o", "APT::Get::List-Cleanup=false",
		"-o", "Acquire::Languages=none",
		// The private dirs belong to root; apt's _apt sandbox user could not
		// write them and would warn on every download.
		"-o", "APT::Sandbox::User=root",
		"-q",
	}
}

// Prepare writes the sources list and creates the private directories.
func (d AptDirs) Prepare(s Suite) error {
	for _, dir := range []string{
		filepath.Join(d.ListsDir(), "partial"),
		filepath.Join(d.CacheDir(), "archives", "partial"),
	} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile(d.SourcesFile(), []byte(SourcesList(s)), 0o644)
}

// Fresh reports whether the suite's lists were updated within maxAge.
func (d AptDirs) Fresh(maxAge time.Duration) bool {
	files, _ := d.PackagesFiles()
	if len(files) == 0 {
		return false
	}
	st, err := os.Stat(filepath.Join(d.Root, "updated"))
	return err == nil && time.Since(st.ModTime()) < maxAge
}

// Update runs apt-get update against the private state.
func (d AptDirs) Update(ctx context.Context, log func(string, ...any)) error {
	args := append([]string{"update"}, d.AptArgs()...)
	log("apt-get update (private list %s)", d.SourcesFile())
	out, err := exec.CommandContext(ctx, "apt-get", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("apt-get update with %s: %v\n%s", d.SourcesFile(), err, tail(out, 20))
	}
	return os.WriteFile(filepath.Join(d.Root, "updated"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
}

// PackagesFiles lists the downloaded Packages indexes (any compression).
func (d AptDirs) PackagesFiles() ([]string, error) {
	return filepath.Glob(filepath.Join(d.ListsDir(), "*_binary-amd64_Packages*"))
}

// ReadPackages parses every Packages index of the suite. apt may keep them
// compressed (Acquire::GzipIndexes); apt-helper cat-file reads any of them.
func (d AptDirs) ReadPackages(ctx context.Context) ([]Package, error) {
	files, err := d.PackagesFiles()
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no Packages index under %s (apt-get update failed?)", d.ListsDir())
	}
	var all []Package
	for _, f := range files {
		cmd := exec.CommandContext(ctx, "/usr/lib/apt/apt-helper", "cat-file", f)
		rc, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("apt-helper cat-file %s: %w", f, err)
		}
		pkgs, perr := ParsePackages(rc)
		werr := cmd.Wait()
		if perr != nil {
			return nil, fmt.Errorf("%s: %w", f, perr)
		}
		if werr != nil {
			return nil, fmt.Errorf("apt-helper cat-file %s: %w", f, werr)
		}
		all = append(all, pkgs...)
	}
	return all, nil
}

// DownloadArgs is the apt-get command line that fetches pkg=version into the
// current directory.
func (d AptDirs) DownloadArgs(name, version string) []string {
	spec := name
	if version != "" {
		spec += "=" + version
	}
	return append(append([]string{"download"}, d.AptArgs()...), spec)
}

// Download fetches pkg=version into dir and returns the .deb path.
func (d AptDirs) Download(ctx context.Context, dir, name, version string, log func(string, ...any)) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if existing := findDeb(dir, name, version); existing != "" {
		return existing, nil
	}
	log("apt-get download %s=%s", name, version)
	cmd := exec.CommandContext(ctx, "apt-get", d.DownloadArgs(name, version)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s=%s: %v\n%s", name, version, err, tail(out, 20))
	}
	if f := findDeb(dir, name, version); f != "" {
		return f, nil
	}
	return "", fmt.Errorf("apt-get download %s=%s left no .deb in %s", name, version, dir)
}

// findDeb finds name_version_arch.deb (apt escapes ':' of an epoch as %3a).
func findDeb(dir, name, version string) string {
	v := strings.ReplaceAll(version, ":", "%3a")
	matches, _ := filepath.Glob(filepath.Join(dir, name+"_"+v+"_*.deb"))
	if len(matches) == 0 {
		return ""
	}
	return matches[0]
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
