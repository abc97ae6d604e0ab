package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// What deploy/ ships: the example configuration and the systemd unit.
const (
	exampleConfig = "../../deploy/mirrord.example.yaml"
	unitFile      = "../../deploy/systemd/mirrord.service"
	// exampleConfDir is where the example's files live on a host.
	exampleConfDir = "/etc/mirror/"
)

// commentedSetting is a line of the example left commented out: "# key:
// value" at the key's indentation. Prose comments never start so.
var commentedSetting = regexp.MustCompile(`(?m)^(\s*)# ([a-z_]+:(?: .*)?)$`)

// exampleAt is the example configuration, moved from /etc/mirror to dir
// (its secret files there, so that the loader can read them), with its
// commented-out settings in use if all is set.
func exampleAt(t *testing.T, dir string, all bool) string {
	t.Helper()
	data, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if all {
		text = commentedSetting.ReplaceAllString(text, "$1$2")
	}
	text = strings.ReplaceAll(text, exampleConfDir, dir+"/")
	for _, secret := range []string{"etcd-password", "nats-password"} {
		if err := os.WriteFile(filepath.Join(dir, secret), []byte(secret+"-value\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "mirrord.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestExampleConfig: the example loads with mirrord's own loader (which
// refuses unknown keys), as it is and with every commented-out setting
// in use, and says what its comments say.
func TestExampleConfig(t *testing.T) {
	for _, all := range []bool{false, true} {
		dir := t.TempDir()
		var stderr bytes.Buffer
		cfg, err := loadConfig([]string{"--config", exampleAt(t, dir, all)}, env(nil), &stderr)
		if err != nil {
			t.Fatalf("the example (commented settings in use: %v) does not load: %v\n%s", all, err, stderr.String())
		}
		if cfg.Etcd.Password != "etcd-password-value" || cfg.NATS.Password != "nats-password-value" {
			t.Errorf("passwords %q, %q: want them read from the example's password files", cfg.Etcd.Password, cfg.NATS.Password)
		}
		if cfg.PluginDir != "/usr/lib/mirrord/plugins" || !slices.Equal(cfg.Plugins["ceph"].Args, []string{"--state-dir", "/var/lib/mirrord/ceph"}) {
			t.Errorf("plugin dir %q, ceph plugin args %q", cfg.PluginDir, cfg.Plugins["ceph"].Args)
		}
		if cfg.Etcd.SessionTTL != 10*time.Second || cfg.ResyncInterval != 5*time.Minute || cfg.LogFormat != "json" {
			t.Errorf("session ttl %s, resync %s, log format %q: not the example's", cfg.Etcd.SessionTTL, cfg.ResyncInterval, cfg.LogFormat)
		}
	}
}

// TestExampleConfigHasEveryKey: every key of Config is in the example, in
// use or commented out, so that the example documents them all.
func TestExampleConfigHasEveryKey(t *testing.T) {
	data, err := os.ReadFile(exampleAt(t, t.TempDir(), true))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	yamlPaths(doc, "", have)
	var missing []string
	for _, p := range configPaths(reflect.TypeFor[Config](), "") {
		if !have[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Errorf("deploy/mirrord.example.yaml lacks %s: add each, commented out (\"# key: value\") if not in use", strings.Join(missing, ", "))
	}
}

// configPaths are the dotted YAML keys of t, a map's keys written "*".
func configPaths(t reflect.Type, prefix string) []string {
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		p := prefix + name
		out = append(out, p)
		switch ft := f.Type; {
		case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Duration]():
			out = append(out, configPaths(ft, p+".")...)
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
			out = append(out, p+".*")
			out = append(out, configPaths(ft.Elem(), p+".*.")...)
		}
	}
	return out
}

// yamlPaths records the dotted keys of a decoded YAML document, the keys
// of plugins (names) written "*".
func yamlPaths(v any, prefix string, have map[string]bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	for k, e := range m {
		if prefix == "plugins." {
			k = "*"
		}
		have[prefix+k] = true
		yamlPaths(e, prefix+k+".", have)
	}
}

// TestUnitVerifies: systemd's own checker finds nothing to say about the
// unit: systemd-analyze verify, which exits 0 even on unknown keys or
// values it ignores, so any line naming the unit fails the test.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found (Debian's systemd package has it): the unit is not verified")
	}
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "\nExecStart=/usr/bin/mirrord --config /etc/mirror/mirrord.yaml\n") {
		t.Fatal("the unit does not start /usr/bin/mirrord --config /etc/mirror/mirrord.yaml")
	}
	// verify checks that ExecStart's binary exists: this test's stands in
	// for /usr/bin/mirrord.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "mirrord.service")
	if err := os.WriteFile(copyPath, bytes.ReplaceAll(unit, []byte("/usr/bin/mirrord"), []byte(self)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, analyze, "verify", copyPath).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, "mirrord.service") {
			t.Errorf("systemd-analyze verify: %s", strings.TrimSpace(line))
		}
	}
}
