package kernels

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func fixture(t *testing.T) []Package {
	t.Helper()
	f, err := os.Open("testdata/Packages")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pkgs, err := ParsePackages(f)
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func TestParsePackages(t *testing.T) {
	pkgs := fixture(t)
	if len(pkgs) != 43 {
		t.Fatalf("parsed %d stanzas, want 43", len(pkgs))
	}
	first := pkgs[0]
	if first.Name != "linux-headers-6.1.0-56-amd64" || first.Version != "6.1.192-2" {
		t.Errorf("first stanza = %+v", first)
	}
	for _, p := range pkgs {
		if strings.Contains(p.Name, "9.9.9") {
			t.Errorf("a continuation line was read as a field: %+v", p)
		}
	}
	var k Package
	for _, p := range pkgs {
		if p.Name == "linux-image-5.10.0-46-amd64-unsigned" {
			k = p
		}
	}
	if k.Version != "5.10.262-1" || !strings.HasPrefix(k.Filename, "pool/") || k.SHA256 == "" || k.Size == "" {
		t.Errorf("5.10.0-46 stanza = %+v", k)
	}
}

func TestResolveFixture(t *testing.T) {
	pkgs := fixture(t)
	for _, tc := range []struct {
		prefix, pkg, release string
	}{
		{"5.10", "linux-image-5.10.0-46-amd64-unsigned", "5.10.0-46-amd64"},
		{"5.10.0-32", "linux-image-5.10.0-32-amd64-unsigned", "5.10.0-32-amd64"},
		// 6.1 must not take 6.12; the newest ABI wins; unsigned beats signed.
		{"6.1", "linux-image-6.1.0-56-amd64-unsigned", "6.1.0-56-amd64"},
		{"6.1.0-50", "linux-image-6.1.0-50-amd64-unsigned", "6.1.0-50-amd64"},
		{"6.12", "linux-image-6.12.117+deb13-amd64-unsigned", "6.12.117+deb13-amd64"},
		// sid ships only the signed name.
		{"7", "linux-image-7.2.13+deb14-amd64", "7.2.13+deb14-amd64"},
		{"7.2", "linux-image-7.2.13+deb14-amd64", "7.2.13+deb14-amd64"},
		{"6", "linux-image-7.2.13+deb14-amd64", ""}, // no: "6" must not match 7.x
	} {
		c, err := Resolve(pkgs, tc.prefix)
		if tc.release == "" {
			if err == nil && strings.HasPrefix(c.Release, "7") {
				t.Errorf("Resolve(%q) = %s, must not cross into 7.x", tc.prefix, c.Name)
			}
			continue
		}
		if err != nil {
			t.Errorf("Resolve(%q): %v", tc.prefix, err)
			continue
		}
		if c.Name != tc.pkg || c.Release != tc.release {
			t.Errorf("Resolve(%q) = %s (%s), want %s (%s)", tc.prefix, c.Name, c.Release, tc.pkg, tc.release)
		}
	}
	if _, err := Resolve(pkgs, "4.19"); err == nil || !strings.Contains(err.Error(), "4.19") {
		t.Errorf("Resolve(4.19) error = %v, want one naming the prefix", err)
	}
}

func TestReleaseOf(t *testing.T) {
	for name, want := range map[string]string{
		"linux-image-6.1.0-47-amd64-unsigned":       "6.1.0-47-amd64",
		"linux-image-6.1.0-47-amd64":                "6.1.0-47-amd64",
		"linux-image-6.1.0-47-cloud-amd64-unsigned": "",
		"linux-image-6.12.57+deb13-rt-amd64":        "",
		"linux-image-7.2.13+deb14-amd64":            "7.2.13+deb14-amd64",
		"linux-image-6.1.0-0.deb11.52-amd64":        "6.1.0-0.deb11.52-amd64",
		"linux-image-amd64":                         "",
		"linux-image-6.1.0-47-amd64-dbg":            "",
		"linux-headers-6.1.0-47-amd64":              "",
	} {
		if got, _ := ReleaseOf(name); got != want {
			t.Errorf("ReleaseOf(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestMatchesPrefix(t *testing.T) {
	for _, tc := range []struct {
		release, prefix string
		want            bool
	}{
		{"6.1.0-47-amd64", "6.1", true},
		{"6.12.57+deb13-amd64", "6.1", false},
		{"6.12.57+deb13-amd64", "6.12", true},
		{"7.2.13+deb14-amd64", "7", true},
		{"17.0.0-1-amd64", "7", false},
		{"6.1.0-47-amd64", "6.1.0-47-amd64", true},
		{"6.1.0-47-amd64", "", false},
	} {
		if got := MatchesPrefix(tc.release, tc.prefix); got != tc.want {
			t.Errorf("MatchesPrefix(%q, %q) = %v", tc.release, tc.prefix, got)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"6.1.192-2", "6.1.176-1", 1},
		{"6.1.9-1", "6.1.10-1", -1},
		{"1.0~rc1-1", "1.0-1", -1},
		{"1.0-1", "1.0-1", 0},
		{"1:0.9-1", "2.0-1", 1},
		{"6.1.180+1~deb11u1", "6.1.180+1", -1},
		{"1.0a", "1.0", 1},
		{"1.0-1", "1.0-1.1", -1},
	} {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := CompareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestSuiteFor(t *testing.T) {
	for prefix, want := range map[string]string{
		"5.10": "bullseye", "5.10.0-32": "bullseye", "6.1": "bookworm", "6.1.0-47-amd64": "bookworm",
		"6.12": "trixie", "7": "sid", "6.17": "sid",
	} {
		if got := SuiteFor(prefix); got != want {
			t.Errorf("SuiteFor(%q) = %q, want %q", prefix, got, want)
		}
	}
}

func TestSourcesList(t *testing.T) {
	bookworm, _ := LookupSuite("bookworm")
	got := SourcesList(bookworm)
	want := "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main\n" +
		"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main\n"
	if got != want {
		t.Errorf("SourcesList(bookworm) =\n%s\nwant\n%s", got, want)
	}
	sid, _ := LookupSuite("sid")
	if s := SourcesList(sid); strings.Contains(s, "security") || strings.Count(s, "\n") != 1 {
		t.Errorf("SourcesList(sid) = %q, want one line without a security pocket", s)
	}
	if _, err := LookupSuite("buster"); err == nil {
		t.Error("LookupSuite(buster) succeeded")
	}
}

func TestAptArgsArePrivate(t *testing.T) {
	d := AptDirs{Root: "/c/apt/bookworm"}
	args := d.AptArgs()
	opts := map[string]string{}
	for i := 0; i < len(args); i++ {
		if args[i] == "-o" && i+1 < len(args) {
			k, v, _ := strings.Cut(args[i+1], "=")
			opts[k] = v
			i++
		}
	}
	for k, want := range map[string]string{
		"Dir::Etc::SourceList":  "/c/apt/bookworm/sources.list",
		"Dir::Etc::SourceParts": "/dev/null",
		"Dir::State::Lists":     "/c/apt/bookworm/lists",
		"Dir::Cache":            "/c/apt/bookworm/cache",
		"Dir::Cache::Archives":  "/c/apt/bookworm/cache/archives",
	} {
		if opts[k] != want {
			t.Errorf("%s = %q, want %q", k, opts[k], want)
		}
	}
	for _, a := range args {
		if strings.HasPrefix(a, "/etc/apt") || strings.Contains(a, "/var/lib/apt") {
			t.Errorf("apt args touch the system's apt state: %q", a)
		}
	}
	dl := d.DownloadArgs("linux-image-6.1.0-56-amd64-unsigned", "6.1.192-2")
	if dl[0] != "download" || dl[len(dl)-1] != "linux-image-6.1.0-56-amd64-unsigned=6.1.192-2" {
		t.Errorf("DownloadArgs = %v", dl)
	}
	if !slices.Contains(dl, "Dir::Etc::SourceList=/c/apt/bookworm/sources.list") {
		t.Errorf("DownloadArgs lacks the private sources list: %v", dl)
	}
}

func TestPrepareWritesSources(t *testing.T) {
	d := AptDirs{Root: t.TempDir()}
	s, _ := LookupSuite("trixie")
	if err := d.Prepare(s); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(d.SourcesFile())
	if err != nil || !strings.Contains(string(b), " trixie main") || !strings.Contains(string(b), "trixie-security") {
		t.Errorf("sources.list = %q (%v)", b, err)
	}
	if d.Fresh(ListsMaxAge) {
		t.Error("an empty lists dir counts as fresh")
	}
}

func TestFindDebEscapesEpoch(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/foo_1%3a2.0-1_all.deb", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := findDeb(dir, "foo", "1:2.0-1"); !strings.HasSuffix(got, "foo_1%3a2.0-1_all.deb") {
		t.Errorf("findDeb = %q", got)
	}
}

func TestPartsOfSplitImage(t *testing.T) {
	c, err := Resolve(fixture(t), "7")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range c.Parts() {
		names = append(names, p.Name+"="+p.Version)
	}
	want := "linux-image-7.2.13+deb14-amd64=7.2.13-1 linux-base-7.2.13+deb14-amd64=7.2.13-1 " +
		"linux-binary-7.2.13+deb14-amd64=7.2.13-1 linux-modules-7.2.13+deb14-amd64=7.2.13-1"
	if strings.Join(names, " ") != want {
		t.Errorf("parts = %v\nwant %s", names, want)
	}
	c61, _ := Resolve(fixture(t), "6.1")
	if len(c61.Parts()) != 1 {
		t.Errorf("6.1 (one package) parts = %v", c61.Parts())
	}
}

func TestLocateLayouts(t *testing.T) {
	for name, files := range map[string][]string{
		"bookworm": {"boot/vmlinuz-R", "lib/modules/R/modules.order"},
		"sid":      {"usr/lib/modules/R/vmlinuz", "usr/lib/modules/R/modules.order"},
	} {
		tree := t.TempDir()
		for _, f := range files {
			p := tree + "/" + f
			if err := os.MkdirAll(p[:strings.LastIndex(p, "/")], 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		k := &Kernel{Tree: tree, Release: "R"}
		if err := k.locate(); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if k.Vmlinuz != tree+"/"+files[0] || !strings.HasSuffix(k.ModulesDir, "modules/R") {
			t.Errorf("%s: vmlinuz %s modules %s", name, k.Vmlinuz, k.ModulesDir)
		}
	}
	if err := (&Kernel{Tree: t.TempDir(), Release: "R"}).locate(); err == nil || !strings.Contains(err.Error(), "no vmlinuz-R") {
		t.Errorf("empty tree: %v", err)
	}
}

func TestMergeUsr(t *testing.T) {
	tree := t.TempDir()
	if err := os.MkdirAll(tree+"/usr/lib/modules/R", 0o755); err != nil {
		t.Fatal(err)
	}
	k := &Kernel{Tree: tree, Release: "R"}
	if err := k.mergeUsr(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(tree + "/lib/modules/R"); err != nil || !st.IsDir() {
		t.Errorf("lib/modules/R not reachable: %v", err)
	}
	if err := k.mergeUsr(); err != nil {
		t.Errorf("second call: %v", err)
	}
}
