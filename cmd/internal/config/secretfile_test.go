package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretFileModes: a password file anyone may read, or its group may
// write, is refused with its path and mode; 0600 and 0640 are read. A
// configuration file holding a password or a plugin's environment is
// held to the same rule; one holding no secret is not.
func TestSecretFileModes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		return p
	}
	noenv := func(string) string { return "" }
	for _, tc := range []struct {
		mode os.FileMode
		want string // "" when accepted
	}{
		{0o600, ""},
		{0o640, ""},
		{0o400, ""},
		{0o644, "has mode 0644: anyone on this host may read or change it"},
		{0o604, "has mode 0604: anyone on this host may read or change it"},
		{0o660, "has mode 0660: its group may change it"},
	} {
		pw := write(fmt.Sprintf("etcd-password-%o", tc.mode), "pw-from-file\n", tc.mode)
		c, err := Load([]string{"--etcd-password-file", pw}, noenv, io.Discard)
		switch {
		case tc.want == "" && (err != nil || c.Etcd.Password != "pw-from-file"):
			t.Errorf("mode %04o: %v, password %q; want it read", tc.mode, err, c.Etcd.Password)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), "secret file "+pw+" "+tc.want)):
			t.Errorf("mode %04o: %v; want refused: %q", tc.mode, err, tc.want)
		case tc.want != "" && strings.Contains(err.Error(), "pw-from-file"):
			t.Errorf("mode %04o: the error holds the password: %v", tc.mode, err)
		case err != nil:
			t.Logf("mode %04o: %v", tc.mode, err)
		}
	}

	plain := write("plain.yaml", "plugin_dir: /opt/plugins\n", 0o644)
	if _, err := Load([]string{"--config", plain}, noenv, io.Discard); err != nil {
		t.Errorf("a world-readable config file without secrets: %v", err)
	}
	for i, tc := range []struct{ body, held string }{
		{"etcd: {password: inline}\n", "etcd.password"},
		{"nats: {token: inline}\n", "nats.token"},
		{"plugins: {netapp: {env: {NETAPP_TOKEN: x}}}\n", "plugins.netapp.env"},
	} {
		body, held := tc.body, tc.held
		file := write(fmt.Sprintf("secret-%d.yaml", i), body, 0o644)
		_, err := Load([]string{"--config", file}, noenv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "config file (it holds "+held+") "+file+" has mode 0644") {
			t.Errorf("%q in a 0644 config file: %v; want refused", body, err)
		}
		if err := os.Chmod(file, 0o640); err != nil {
			t.Fatal(err)
		}
		if _, err := Load([]string{"--config", file}, noenv, io.Discard); err != nil {
			t.Errorf("%q in a 0640 config file: %v", body, err)
		}
	}
}
