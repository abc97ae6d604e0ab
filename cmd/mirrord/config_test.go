package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "mirrord.yaml")
	if err := os.WriteFile(file, []byte("daemon_id: from-file\nresync_interval: 7m\netcd:\n  endpoints: [file:2379]\n  username: cdm\nnats:\n  url: nats://file:4222\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig([]string{"--config", file, "--daemon-id", "from-flag"},
		env(map[string]string{"MIRRORD_DAEMON_ID": "from-env", "MIRRORD_NATS_URL": "nats://env:4222"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DaemonID != "from-flag" {
		t.Errorf("daemon id = %q: a flag must win over env and file", cfg.DaemonID)
	}
	if cfg.NATS.URL != "nats://env:4222" {
		t.Errorf("nats url = %q: env must win over the file", cfg.NATS.URL)
	}
	if cfg.ResyncInterval != 7*time.Minute || cfg.Etcd.Username != "cdm" || len(cfg.Etcd.Endpoints) != 1 || cfg.Etcd.Endpoints[0] != "file:2379" {
		t.Errorf("file values lost: %+v", cfg)
	}
	if cfg.PollInterval != 30*time.Second {
		t.Errorf("poll interval = %s, want the default 30s", cfg.PollInterval)
	}
}

func TestConfigFileFromEnv(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	_ = os.WriteFile(file, []byte("plugin_dir: /opt/plugins\n"), 0o600)
	cfg, err := loadConfig(nil, env(map[string]string{"MIRRORD_CONFIG": file}), &bytes.Buffer{})
	if err != nil || cfg.PluginDir != "/opt/plugins" {
		t.Fatalf("cfg.PluginDir = %q, err %v", cfg.PluginDir, err)
	}
}

func TestConfigSecrets(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "etcd-password")
	_ = os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	cfg, err := loadConfig([]string{"--etcd-password-file", pw}, env(map[string]string{"MIRRORD_NATS_PASSWORD": "n4ts"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Etcd.Password != "s3cret" || cfg.NATS.Password != "n4ts" {
		t.Fatalf("passwords = %q, %q", cfg.Etcd.Password, cfg.NATS.Password)
	}
	// No flag takes a password: it would show in ps.
	var usage bytes.Buffer
	_, err = loadConfig([]string{"--etcd-password", "x"}, env(nil), &usage)
	if err == nil {
		t.Fatal("a --etcd-password flag was accepted")
	}
	if strings.Contains(usage.String(), "-etcd-password ") {
		t.Fatalf("usage offers a password flag:\n%s", usage.String())
	}
}

func TestConfigRefusesBadValues(t *testing.T) {
	for name, args := range map[string][]string{
		"log level":       {"--log-level", "loud"},
		"log format":      {"--log-format", "xml"},
		"nats mode":       {"--nats-mode", "maybe"},
		"short ttl":       {"--etcd-session-ttl", "500ms"},
		"bad duration":    {"--resync-interval", "often"},
		"stray arguments": {"extra"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := loadConfig(args, env(nil), &bytes.Buffer{}); err == nil {
				t.Fatalf("%v accepted", args)
			}
		})
	}
	file := filepath.Join(t.TempDir(), "c.yaml")
	_ = os.WriteFile(file, []byte("resync_intervall: 5m\n"), 0o600)
	if _, err := loadConfig([]string{"--config", file}, env(nil), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "resync_intervall") {
		t.Fatalf("unknown file key: err = %v, want it named", err)
	}
}

func TestDefaultDaemonID(t *testing.T) {
	cfg, err := loadConfig(nil, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if !strings.HasPrefix(cfg.DaemonID, host+"-") {
		t.Fatalf("daemon id = %q, want hostname-pid", cfg.DaemonID)
	}
}

// The main job: mirrord --embedded DIR starts its own etcd and NATS, runs,
// and stops cleanly with exit code 0 when told to.
func TestRunEmbedded(t *testing.T) {
	dir := t.TempDir()
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--embedded", dir, "--embedded-etcd-port", "0", "--embedded-nats-port", "0", "--log-format", "json", "--http-address", "127.0.0.1:0"}, env(nil), &out, &out)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), `"msg":"engine started"`) {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no engine start in 30s; output:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit code %d; output:\n%s", c, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("mirrord did not stop within 30s")
	}
	for _, sub := range []string{"etcd", "nats"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			t.Errorf("no %s data under the embedded dir: %v", sub, err)
		}
	}
	// etcd's data holds the storages' metadata, keyrings included.
	if fi, _ := os.Stat(filepath.Join(dir, "etcd")); fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("embedded etcd data dir is %v, want private", fi.Mode().Perm())
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"--log-level", "loud"}, env(nil), &out, &out); code != 2 {
		t.Fatalf("exit code %d, want 2; output: %s", code, out.String())
	}
	if !strings.Contains(out.String(), "log level") {
		t.Fatalf("output does not say what is wrong: %s", out.String())
	}
}

// Plugin settings come from the file's plugins: map; an entry of
// MIRRORD_PLUGINS replaces the file's for that plugin and leaves the
// others alone.
func TestConfigPluginSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	_ = os.WriteFile(file, []byte(`plugins:
  ceph:
    args: ["--state-dir", "/var/lib/mirrord-b/ceph"]
    env: {CEPH_ARGS: "--log-to-stderr=false"}
  netapp:
    env: {NETAPP_TOKEN: file-token}
`), 0o600)
	cfg, err := loadConfig([]string{"--config", file}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ceph := cfg.Plugins["ceph"]
	if !slices.Equal(ceph.Args, []string{"--state-dir", "/var/lib/mirrord-b/ceph"}) || ceph.Env["CEPH_ARGS"] != "--log-to-stderr=false" {
		t.Fatalf("ceph settings = %+v", ceph)
	}
	cfg, err = loadConfig([]string{"--config", file}, env(map[string]string{
		"MIRRORD_PLUGINS": `{"netapp": {"env": {"NETAPP_TOKEN": "env-token"}}, "example": {"args": ["-v"]}}`,
	}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Plugins["netapp"].Env["NETAPP_TOKEN"]; got != "env-token" {
		t.Errorf("netapp token = %q: the environment's entry must win over the file's", got)
	}
	if !slices.Equal(cfg.Plugins["example"].Args, []string{"-v"}) || len(cfg.Plugins["ceph"].Args) != 2 {
		t.Errorf("settings = %+v: want the environment's plugins added and the file's others kept", cfg.Plugins)
	}
	// The host gets them as they are.
	if hs := hostSettings(cfg.Plugins); hs["ceph"].Args[1] != "/var/lib/mirrord-b/ceph" || hs["netapp"].Env["NETAPP_TOKEN"] != "env-token" {
		t.Errorf("host settings = %+v", hs)
	}
}

func TestConfigRefusesBadPluginSettings(t *testing.T) {
	for name, yml := range map[string]string{
		"path as name":     "plugins: {\"../ceph\": {args: [x]}}",
		"hidden name":      "plugins: {.ceph: {args: [x]}}",
		"'=' in env name":  "plugins: {ceph: {env: {\"A=B\": x}}}",
		"empty env name":   "plugins: {ceph: {env: {\"\": x}}}",
		"unknown field":    "plugins: {ceph: {argz: [x]}}",
		"args not a list":  "plugins: {ceph: {args: --state-dir}}",
		"settings not map": "plugins: [ceph]",
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "c.yaml")
			_ = os.WriteFile(file, []byte(yml+"\n"), 0o600)
			if _, err := loadConfig([]string{"--config", file}, env(nil), &bytes.Buffer{}); err == nil {
				t.Fatalf("%s accepted", yml)
			}
		})
	}
	// A malformed MIRRORD_PLUGINS is refused without quoting it: it may
	// hold secrets.
	_, err := loadConfig(nil, env(map[string]string{"MIRRORD_PLUGINS": `{"ceph": {"env": {"TOKEN": ["s3cret"]}}}`}), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "MIRRORD_PLUGINS") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v: want MIRRORD_PLUGINS refused, its value not quoted", err)
	}
}
