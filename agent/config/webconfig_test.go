package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// writeWeb writes a web config file named web.yml into a fresh directory.
func writeWeb(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// --web.config.file is a flag and the YAML key web.config.file, empty
// (plain HTTP) by default; a valid file is accepted from either.
func TestWebConfigFileFlagAndKey(t *testing.T) {
	if d := Default(); d.WebConfigFile != "" {
		t.Errorf("default --web.config.file %q, want empty (plain HTTP)", d.WebConfigFile)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	web := writeWeb(t, fmt.Sprintf("basic_auth_users:\n  prometheus: %s\n", hash))
	c, err := Load([]string{"--web.config.file", web}, io.Discard)
	if err != nil || c.WebConfigFile != web {
		t.Errorf("flag: %q, %v; want %q", c.WebConfigFile, err, web)
	}
	c, err = Load([]string{"--config", writeFile(t, fmt.Sprintf("web.config.file: %q\n", web))}, io.Discard)
	if err != nil || c.WebConfigFile != web {
		t.Errorf("YAML key: %q, %v; want %q", c.WebConfigFile, err, web)
	}
	// The flag wins over the file, and may switch it off.
	c, err = Load([]string{"--config", writeFile(t, "web.config.file: /nonexistent/web.yml\n"), "--web.config.file="}, io.Discard)
	if err != nil || c.WebConfigFile != "" {
		t.Errorf("flag over file: %q, %v; want empty", c.WebConfigFile, err)
	}
}

// A missing or invalid web config file fails at start, in one line that
// names the flag, the file and the fix.
func TestWebConfigFileErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing-web.yml")
	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"missing file", missing, []string{"missing-web.yml", "no such file", "leave it empty for plain HTTP"}},
		{"unknown key", writeWeb(t, "tls_config:\n  cert_file: x\n"), []string{"tls_config", "exporter-toolkit"}},
		{"not YAML", writeWeb(t, "tls_server_config: [\n"), []string{"exporter-toolkit"}},
		{"certificate file missing", writeWeb(t, "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n"), []string{"nope", "exporter-toolkit"}},
		{"key file not given", writeWeb(t, "tls_server_config:\n  cert_file: server.crt\n"), []string{"exporter-toolkit"}},
		{"password not a bcrypt hash", writeWeb(t, "basic_auth_users:\n  prometheus: plaintext\n"), []string{"exporter-toolkit"}},
	} {
		for _, args := range [][]string{
			{"--web.config.file", tc.path},
			{"--config", writeFile(t, fmt.Sprintf("web.config.file: %q\n", tc.path))},
		} {
			_, err := Load(args, io.Discard)
			if err == nil {
				t.Errorf("%s (%s): accepted", tc.name, args[0])
				continue
			}
			msg := err.Error()
			for _, w := range append([]string{"--web.config.file", tc.path}, tc.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("%s (%s): error %q does not say %q", tc.name, args[0], msg, w)
				}
			}
			oneLine(t, err)
		}
	}
}
