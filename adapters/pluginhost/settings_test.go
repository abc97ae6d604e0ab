package pluginhost

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSettings: a plugin is started, and started again after it died,
// with the arguments and environment its settings give it, on top of
// PATH and nothing else of the daemon's; the host logs the names of that
// environment, never the values.
func TestSettings(t *testing.T) {
	t.Setenv("MIRROR_TEST_SECRET", "daemon-secret")
	dir := t.TempDir()
	path := writeScript(t, dir, "example", fmt.Sprintf(`exec %s -types=%s "$@"`, testPlugin, exampleType))
	const value = "settings-secret-value"
	rec := newLogRecorder()
	host := startHost(t, Config{Dir: dir, Plugins: map[string]Settings{
		"example": {Args: []string{"-echo-env=MIRROR_TEST_SETTING"}, Env: map[string]string{"MIRROR_TEST_SETTING": value}},
	}}, slog.New(rec))

	check := func(starts int) {
		t.Helper()
		eventually(t, fmt.Sprintf("%d starts logged by the plugin", starts), func() bool { return len(rec.find("testplugin serving")) >= starts })
		r := rec.find("testplugin serving")[starts-1]
		if r["args"] != "-types="+exampleType+" -echo-env=MIRROR_TEST_SETTING" {
			t.Errorf("start %d: the plugin's arguments are %q, want its settings' after the script's", starts, r["args"])
		}
		if r["echo"] != value {
			t.Errorf("start %d: the plugin read MIRROR_TEST_SETTING = %q, want its settings' value", starts, r["echo"])
		}
		env := strings.Split(r["env"], ",")
		if !slices.Contains(env, "PATH") || !slices.Contains(env, "MIRROR_TEST_SETTING") || slices.Contains(env, "MIRROR_TEST_SECRET") {
			t.Errorf("start %d: the plugin's environment holds %v: want PATH and its settings', not the daemon's variables", starts, env)
		}
	}
	check(1)
	loaded := rec.find("plugin loaded")
	if len(loaded) != 1 || loaded[0]["env"] != "[MIRROR_TEST_SETTING]" || loaded[0]["args"] != "[-echo-env=MIRROR_TEST_SETTING]" {
		t.Fatalf("load logged as %v, want the settings' arguments and environment names", loaded)
	}

	// A restart is started the same way.
	be, err := host.For(t.Context(), exampleType)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(status(t, host, path).Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the death noticed", func() bool { return status(t, host, path).State == StateRestarting })
	if _, err := be.Info(t.Context()); err != nil {
		t.Fatalf("Info after the plugin died: %v", err)
	}
	check(2)

	// The host's own records never hold the value; the plugin's own log
	// line (forwarded, and written by the test plugin on purpose) does.
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range *rec.records {
		if r.Message == "testplugin serving" {
			continue
		}
		line := r.Message
		r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
		if strings.Contains(line, value) {
			t.Errorf("the host logged a settings value: %s", line)
		}
	}
}

// TestSettingsForMissingPlugin: settings naming no file of the directory
// are warned about once, not at every rescan, and apply to a file of that
// name once it appears.
func TestSettingsForMissingPlugin(t *testing.T) {
	dir := t.TempDir()
	writePlugin(t, dir, "example", "-types="+exampleType)
	rec := newLogRecorder()
	host := startHost(t, Config{Dir: dir, RescanInterval: 20 * time.Millisecond, Plugins: map[string]Settings{
		"cephh": {Args: []string{"-types=openstack.storage.type.ceph"}},
	}}, slog.New(rec))
	warned := func() []map[string]string {
		return rec.find("settings given for a plugin the plugin directory does not hold")
	}
	w := warned()
	if len(w) != 1 || w[0]["plugin"] != "cephh" || w[0]["level"] != "WARN" || w[0]["plugins_in_dir"] != "[example]" {
		t.Fatalf("warnings %v, want one naming cephh and what the directory holds", w)
	}
	// Another plugin loaded is a rescan done while cephh is still missing.
	writePlugin(t, dir, "other", "-types=openstack.storage.type.other")
	eventually(t, "a rescan", func() bool {
		_, err := host.For(t.Context(), "openstack.storage.type.other")
		return err == nil
	})
	if w := warned(); len(w) != 1 {
		t.Fatalf("warned %d times, want once: %v", len(w), w)
	}
	writeScript(t, dir, "cephh", fmt.Sprintf(`exec %s "$@"`, testPlugin))
	eventually(t, "the plugin named in the settings loaded with them", func() bool {
		_, err := host.For(t.Context(), "openstack.storage.type.ceph")
		return err == nil
	})
}
