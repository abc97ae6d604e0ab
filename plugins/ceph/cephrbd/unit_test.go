package cephrbd

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cdmdr/mirror/plugins/sdk"
)

const secret = "AQBsecretsecretsecretsecretsecret=="

func storage(md map[string]any) sdk.Storage {
	b, _ := json.Marshal(md)
	return sdk.Storage{ClusterID: 6, StorageID: 13, Type: StorageType, Metadata: b}
}

func fullMeta() map[string]any {
	return map[string]any{
		"pool": "volumes", "conf": "[global]\nmon host = 127.0.0.1\n", "client": "cinder", "keyring": secret,
		"admin_client": "admin", "admin_keyring": secret, "unknown_field": 42,
	}
}

func TestParseMeta(t *testing.T) {
	m, err := parseMeta(storage(fullMeta()))
	if err != nil {
		t.Fatal(err)
	}
	if m.MirrorMode != modeJournal || m.Client != "cinder" || m.Pool != "volumes" {
		t.Fatalf("parseMeta = %+v", m)
	}
	for _, field := range []string{"pool", "conf", "client", "keyring", "admin_client", "admin_keyring"} {
		md := fullMeta()
		delete(md, field)
		_, err := parseMeta(storage(md))
		if !errors.Is(err, sdk.ErrPrecondition) || !strings.Contains(err.Error(), `"`+field+`"`) {
			t.Errorf("without %s: %v, want ErrPrecondition naming the field", field, err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error quotes a secret: %v", err)
		}
	}
	for _, bad := range []map[string]any{
		{"mirror_mode": "pool"}, {"mirror_snapshot_interval": "5s"}, {"pool": "a/b"}, {"keyring": 5},
		{"mirror_ship_interval": "30"}, {"mirror_ship_interval": "1ms"},
	} {
		md := fullMeta()
		for k, v := range bad {
			md[k] = v
		}
		_, err := parseMeta(storage(md))
		if !errors.Is(err, sdk.ErrPrecondition) {
			t.Errorf("%v: %v, want ErrPrecondition", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error quotes a secret: %v", err)
		}
	}
	// A syntax error in the document must not quote it.
	s := sdk.Storage{ClusterID: 1, StorageID: 2, Metadata: json.RawMessage(`{"keyring": "` + secret + `" x}`)}
	if _, err := parseMeta(s); !errors.Is(err, sdk.ErrPrecondition) || strings.Contains(err.Error(), secret) {
		t.Errorf("bad JSON: %v", err)
	}
	md := fullMeta()
	md["mirror_mode"], md["mirror_snapshot_interval"] = "snapshot", "1m"
	if m, err := parseMeta(storage(md)); err != nil || m.MirrorMode != modeSnapshot {
		t.Errorf("snapshot mode: %+v, %v", m, err)
	}
	md = fullMeta()
	md["mirror_ship_interval"] = "2s"
	if m, err := parseMeta(storage(md)); err != nil || m.MirrorShipInterval != "2s" {
		t.Errorf("mirror_ship_interval 2s: %+v, %v", m, err)
	}
	md["mirror_ship_interval"] = "soon"
	if _, err := parseMeta(storage(md)); err == nil || !strings.Contains(err.Error(), "mirror_ship_interval") {
		t.Errorf("mirror_ship_interval soon: %v, want an error naming the field", err)
	}
}

func TestStateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	b := New(sdkLoggerTo(&logBuffer{}), dir)
	s := storage(fullMeta())
	sd, err := b.side(s)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"clusters.6.storages.13.conf", "clusters.6.storages.13.client.cinder.keyring", "clusters.6.storages.13.client.admin.keyring"}
	for i, p := range []string{sd.files.Conf, sd.files.Keyring, sd.files.AdminKeyring} {
		if filepath.Base(p) != want[i] {
			t.Errorf("file %s, want %s", filepath.Base(p), want[i])
		}
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v, want 0600", p, err, fi.Mode())
		}
	}
	kr, _ := os.ReadFile(sd.files.Keyring)
	if string(kr) != "[client.cinder]\n\tkey = "+secret+"\n" {
		t.Errorf("keyring file = %q", kr)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v, %v; want 0700", fi.Mode(), err)
	}
	// Rewriting keeps 0600, even when someone loosened it.
	_ = os.Chmod(sd.files.Conf, 0o644)
	if _, err := b.side(s); err != nil {
		t.Fatal(err)
	}
	checkPrivate(t, dir)
	if err := b.removeStorageFiles(sd.s, sd.m); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("left after remove: %v", left)
	}
}

// The paused files of the last release, both formats, still read (they
// are moved into the cluster once).
func TestLegacyPausedFormats(t *testing.T) {
	got := legacyPaused([]byte(`{"volumes/a":null,"volumes/c":["volumes/7f3e-gid"]}`))
	if len(got) != 2 || !slices.Equal(got["volumes/c"], []string{"volumes/7f3e-gid"}) {
		t.Fatalf("legacyPaused(map) = %v", got)
	}
	got = legacyPaused([]byte(`["volumes/x"]`))
	if _, ok := got["volumes/x"]; !ok || len(got) != 1 {
		t.Fatalf("legacyPaused(list) = %v", got)
	}
}

func TestSplitNul(t *testing.T) {
	for in, want := range map[string][]string{"": nil, "a\x00": {"a"}, "a\x00\x00b\x00": {"a", "", "b"}} {
		if got := splitNul([]byte(in)); !slices.Equal(got, want) {
			t.Errorf("splitNul(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEnvIDChecked(t *testing.T) {
	if err := checkEnvID(sdk.Environment{ID: "../x"}); !errors.Is(err, sdk.ErrPrecondition) {
		t.Fatalf("checkEnvID(../x) = %v", err)
	}
}
