package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/memstorage"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
	"github.com/cdmdr/mirror/ports"
)

// harness is the conformance kit's fixture: the host's port over a real
// plugin process, a fresh environment and volume per subtest.
type harness struct {
	be       ports.StorageBackend
	env      ports.Environment
	vol      ports.Volume
	snap     ports.Snapshot
	holdFile memstorage.HoldFile
	cutFile  memstorage.CutFile
}

// CutSource implements plugintest.SourceCutter through the file the
// source storage's metadata names to the plugin process.
func (h *harness) CutSource(t *testing.T) (restore func()) {
	restore, err := h.cutFile.Cut()
	if err != nil {
		t.Fatal(err)
	}
	return restore
}

// HoldFirstCopy implements plugintest.FirstCopyHolder through the file
// the source storage's metadata names to the plugin process.
func (h *harness) HoldFirstCopy(t *testing.T) (release func()) {
	release, err := h.holdFile.Hold()
	if err != nil {
		t.Fatal(err)
	}
	return release
}

func (h *harness) Backend() ports.StorageBackend  { return h.be }
func (h *harness) Environment() ports.Environment { return h.env }
func (h *harness) Volume() ports.Volume           { return h.vol }
func (h *harness) Snapshot() ports.Snapshot       { return h.snap }
func (h *harness) Timeout() time.Duration         { return 5 * time.Second }

// TestConformance runs the storage contract's kit against the host's
// wrapper of the example plugin running as its own process, over
// go-plugin with mutual TLS, its checksum pinned in SHA256SUMS.
func TestConformance(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "example")
	data, err := os.ReadFile(examplePlugin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, SumsFile), []byte(sha256Hex(t, path)+"  example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	host := startHost(t, Config{Dir: dir}, nil)
	if st := status(t, host, path); st.State != StateRunning || st.Name != "memstorage" {
		t.Fatalf("example plugin: %+v", st)
	}
	plugintest.Run(t, func(t *testing.T) plugintest.Harness {
		be, err := host.For(t.Context(), exampleType)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		holdFile := memstorage.HoldFile(filepath.Join(dir, "hold"))
		cutFile := memstorage.CutFile(filepath.Join(dir, "cut"))
		env, vol, snap := fixture(exampleType, "hold_first_copy", holdFile, "cut_file", cutFile)
		return &harness{be: be, env: env, vol: vol, snap: snap, holdFile: holdFile, cutFile: cutFile}
	})
}

// TestPluginKilled: a plugin killed during a call fails that call with a
// retryable error saying the plugin exited; the host starts it again and
// the next call succeeds.
func TestPluginKilled(t *testing.T) {
	dir := t.TempDir()
	path := writePlugin(t, dir, "example", "-types="+exampleType)
	rec := newLogRecorder()
	host := startHost(t, Config{Dir: dir}, slog.New(rec))
	be, err := host.For(t.Context(), exampleType)
	if err != nil {
		t.Fatal(err)
	}
	pid := status(t, host, path).Pid
	if !alive(pid) {
		t.Fatalf("plugin pid %d is not running", pid)
	}
	if n := status(t, host, path).Restarts; n != 0 {
		t.Fatalf("restarts counted before any: %d", n)
	}

	env, vol, _ := fixture(exampleType)
	blocked := vol
	blocked.VolumeUUID = "block-1"
	errc := make(chan error, 1)
	go func() {
		_, err := be.VolumeStatus(t.Context(), blocked)
		errc <- err
	}()
	eventually(t, "blocking in the plugin", func() bool {
		select {
		case err := <-errc:
			t.Fatalf("blocking call returned %v", err)
		default:
		}
		return len(rec.find("testplugin blocking")) > 0
	})
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-errc:
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not return within 10s of the plugin's death")
	}
	if !errors.Is(err, ports.ErrRetryable) || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("call during the kill = %v, want ErrRetryable saying the plugin exited", err)
	}
	t.Logf("call during the kill: %v", err)

	// The next call is served by a new process.
	if err := be.PrepareEnvironment(t.Context(), env); err != nil {
		t.Fatalf("PrepareEnvironment after the kill: %v", err)
	}
	if st, err := be.VolumeStatus(t.Context(), vol); err != nil || st.State != ports.ReplicationAbsent {
		t.Fatalf("VolumeStatus after the kill = %+v, %v", st, err)
	}
	st := status(t, host, path)
	if st.State != StateRunning || st.Pid == pid || !alive(st.Pid) || st.Restarts != 1 {
		t.Fatalf("after restart: %+v, want running with a new pid (old %d), one restart counted", st, pid)
	}
	eventually(t, "the killed process reaped", func() bool { return !alive(pid) })
}

// TestSocketsRemovedOnClose: a plugin makes its socket in the host's own
// directory, so a killed plugin, which cannot remove its socket, leaves
// nothing once the host is closed.
func TestSocketsRemovedOnClose(t *testing.T) {
	dir := t.TempDir()
	path := writePlugin(t, dir, "example", "-types="+exampleType)
	host := New(Config{Dir: dir, StartTimeout: 10 * time.Second}, nil)
	t.Cleanup(host.Close) // on a failure; Close is idempotent
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- host.Run(ctx) }()
	t.Cleanup(cancel)
	if _, err := host.For(t.Context(), exampleType); err != nil {
		t.Fatal(err)
	}
	pid := status(t, host, path).Pid
	sockets, err := filepath.Glob(filepath.Join(host.sockets, "plugin*"))
	if err != nil || len(sockets) != 1 {
		t.Fatalf("sockets in the host's directory %s: %v, %v; want the plugin's one", host.sockets, sockets, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the killed process reaped", func() bool { return !alive(pid) })
	if _, err := os.Lstat(sockets[0]); err != nil {
		t.Fatalf("the killed plugin's socket: %v, want it left behind until Close", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	host.Close()
	if _, err := os.Stat(host.sockets); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the host's socket directory after Close: %v, want it removed", err)
	}
}

// TestSocketDirWithALongTempDir: with a temporary directory whose path is
// too long for a unix socket, the plugins' sockets go to /tmp and the
// plugin loads.
func TestSocketDirWithALongTempDir(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", long)
	dir := t.TempDir()
	writePlugin(t, dir, "example", "-types="+exampleType)
	host := startHost(t, Config{Dir: dir, StartTimeout: 10 * time.Second}, nil)
	if _, err := host.For(t.Context(), exampleType); err != nil {
		t.Fatalf("with TMPDIR %d bytes long: %v", len(long), err)
	}
	if !strings.HasPrefix(host.sockets, "/tmp/mirrord-plugins-") {
		t.Fatalf("the host's socket directory is %q, want one in /tmp", host.sockets)
	}
}

// TestPluginKilledWhileIdle: a plugin that dies between calls is started
// again by the next call, which succeeds.
func TestPluginKilledWhileIdle(t *testing.T) {
	dir := t.TempDir()
	path := writePlugin(t, dir, "example", "-types="+exampleType)
	host := startHost(t, Config{Dir: dir, RescanInterval: time.Hour}, nil)
	be, err := host.For(t.Context(), exampleType)
	if err != nil {
		t.Fatal(err)
	}
	pid := status(t, host, path).Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the death noticed", func() bool { return status(t, host, path).State == StateRestarting })
	if _, err := be.Info(t.Context()); err != nil {
		t.Fatalf("Info after the plugin died idle: %v", err)
	}
	if st := status(t, host, path); st.State != StateRunning || st.Pid == pid {
		t.Fatalf("after restart: %+v", st)
	}
}

// TestCallTimeout: a call the plugin does not answer within CallTimeout
// fails as retryable and a timeout, and the plugin keeps serving.
func TestCallTimeout(t *testing.T) {
	dir := t.TempDir()
	writePlugin(t, dir, "example", "-types="+exampleType)
	host := startHost(t, Config{Dir: dir, CallTimeout: 200 * time.Millisecond}, nil)
	be, err := host.For(t.Context(), exampleType)
	if err != nil {
		t.Fatal(err)
	}
	_, vol, _ := fixture(exampleType)
	blocked := vol
	blocked.VolumeUUID = "block-2"
	begin := time.Now()
	_, err = be.VolumeStatus(t.Context(), blocked)
	if !errors.Is(err, ports.ErrRetryable) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no answer within 200ms") {
		t.Fatalf("VolumeStatus past the call timeout = %v, want retryable and DeadlineExceeded", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("the call took %v", d)
	}
	if _, err := be.VolumeStatus(t.Context(), vol); err != nil {
		t.Fatalf("VolumeStatus after a timed-out call: %v", err)
	}
}

// TestErrorsMapped: the plugin's errors reach the daemon as the ports'
// sentinels, with the plugin's message; a cancelled caller gets its
// context's error.
func TestErrorsMapped(t *testing.T) {
	dir := t.TempDir()
	writePlugin(t, dir, "example", "-types="+exampleType)
	host := startHost(t, Config{Dir: dir}, nil)
	be, err := host.For(t.Context(), exampleType)
	if err != nil {
		t.Fatal(err)
	}
	env, vol, _ := fixture(exampleType)
	err = be.StartVolume(t.Context(), vol)
	if !errors.Is(err, ports.ErrPrecondition) || !strings.HasPrefix(err.Error(), "plugin memstorage (example): StartVolume: ") {
		t.Fatalf("StartVolume before PrepareEnvironment = %v, want ErrPrecondition with the plugin's message", err)
	}
	if errors.Is(err, ports.ErrRetryable) || errors.Is(err, ports.ErrNotFound) {
		t.Fatalf("%v wraps more than ErrPrecondition", err)
	}
	if err := be.PrepareEnvironment(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	if err := be.PauseVolume(t.Context(), vol); !errors.Is(err, ports.ErrNotFound) {
		t.Fatalf("PauseVolume of a volume not replicated = %v, want ErrNotFound", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := be.StartVolume(ctx, vol); !errors.Is(err, context.Canceled) {
		t.Fatalf("StartVolume with a cancelled ctx = %v, want context.Canceled", err)
	}
}

// TestRefused: files that are no plugin, speak another protocol version,
// crash at start or are world-writable are refused, each with an error
// saying why, in Plugins, in the log and in For's error; a good plugin
// beside them serves.
func TestRefused(t *testing.T) {
	dir := t.TempDir()
	good := writePlugin(t, dir, "example", "-types="+exampleType)
	notPlugin := writePlugin(t, dir, "hello", "-mode=notplugin")
	script := writeScript(t, dir, "script", "echo not a plugin either >&2; exit 1")
	v2 := writePlugin(t, dir, "newer", "-mode=wrongversion")
	crash := writePlugin(t, dir, "crash", "-mode=crash")
	writable := writePlugin(t, dir, "writable", "-types=openstack.storage.type.w")
	if err := os.Chmod(writable, 0o757); err != nil {
		t.Fatal(err)
	}
	// Not plugins at all: ignored.
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("plugins"), 0o644); err != nil {
		t.Fatal(err)
	}
	writePlugin(t, dir, ".hidden", "-types=openstack.storage.type.hidden")

	rec := newLogRecorder()
	host := startHost(t, Config{Dir: dir}, slog.New(rec))

	want := map[string]string{
		notPlugin: `not a mirror storage plugin: it answered "hello, I am not a plugin" to the handshake`,
		script:    "exited during the handshake",
		v2:        "speaks plugin protocol version 2, this daemon speaks version 1",
		crash:     "exited during the handshake",
		writable:  "world-writable (mode 0757)",
	}
	for path, msg := range want {
		st := status(t, host, path)
		if st.State != StateRefused || st.Err == nil || !strings.Contains(st.Err.Error(), msg) {
			t.Errorf("%s: %+v, want refused with %q", filepath.Base(path), st, msg)
		}
	}
	if n := len(host.Plugins()); n != len(want)+1 {
		t.Errorf("Plugins lists %d files, want %d: %+v", n, len(want)+1, host.Plugins())
	}
	if st := status(t, host, good); st.State != StateRunning || st.Name != "memstorage" || st.Err != nil || !alive(st.Pid) {
		t.Errorf("good plugin: %+v, want running", st)
	}
	refusals := rec.find("plugin refused")
	if len(refusals) != len(want) {
		t.Errorf("%d refusals logged, want %d: %v", len(refusals), len(want), refusals)
	}
	for _, r := range refusals {
		if r["plugin"] == "" || r["err"] == "" {
			t.Errorf("refusal logged without plugin or err: %v", r)
		}
	}

	be, err := host.For(t.Context(), exampleType)
	if err != nil {
		t.Fatalf("For(%s) beside refused plugins: %v", exampleType, err)
	}
	if _, err := be.Info(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err = host.For(t.Context(), "openstack.storage.type.w")
	if !errors.Is(err, ports.ErrNoBackend) {
		t.Fatalf("For of a refused plugin's type = %v, want ErrNoBackend", err)
	}
	for _, s := range []string{
		"no plugin in " + dir + " serves openstack.storage.type.w",
		"loaded: example [" + exampleType + "]",
		"refused: crash: exited during the handshake",
		"newer: speaks plugin protocol version 2",
		"writable: plugin file " + writable + " is world-writable (mode 0757)",
	} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("For's error %q does not say %q", err, s)
		}
	}
	t.Logf("For's error: %v", err)
}

func sha256Hex(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// TestChecksums: with SHA256SUMS in the directory, a plugin listed with its
// checksum loads; one whose checksum differs and one not listed are
// refused.
func TestChecksums(t *testing.T) {
	dir := t.TempDir()
	good := writePlugin(t, dir, "example", "-types="+exampleType)
	bad := writePlugin(t, dir, "bad", "-types=openstack.storage.type.bad")
	unlisted := writePlugin(t, dir, "unlisted", "-types=openstack.storage.type.unlisted")
	sums := sha256Hex(t, good) + "  example\n" + strings.Repeat("0", 64) + "  bad\n"
	if err := os.WriteFile(filepath.Join(dir, SumsFile), []byte(sums), 0o644); err != nil {
		t.Fatal(err)
	}
	host := startHost(t, Config{Dir: dir}, nil)
	if st := status(t, host, good); st.State != StateRunning {
		t.Errorf("listed plugin: %+v, want running", st)
	}
	if st := status(t, host, bad); st.State != StateRefused || !strings.Contains(st.Err.Error(), "checksum mismatch: SHA256SUMS pins 0000") {
		t.Errorf("mismatched plugin: %+v, want refused for its checksum", st)
	}
	if st := status(t, host, unlisted); st.State != StateRefused || !strings.Contains(st.Err.Error(), "not listed in SHA256SUMS") {
		t.Errorf("unlisted plugin: %+v, want refused as not listed", st)
	}
	if _, err := host.For(t.Context(), exampleType); err != nil {
		t.Fatal(err)
	}
	_, err := host.For(t.Context(), "openstack.storage.type.bad")
	if !errors.Is(err, ports.ErrNoBackend) || !strings.Contains(err.Error(), "bad: checksum mismatch") || !strings.Contains(err.Error(), "unlisted: not listed in SHA256SUMS") {
		t.Fatalf("For(bad type) = %v", err)
	}
}

// TestWorldWritableDir: nothing is loaded from a directory anyone may
// write to, and For says why; once fixed, the next scan loads it.
func TestWorldWritableDir(t *testing.T) {
	dir := t.TempDir()
	path := writePlugin(t, dir, "example", "-types="+exampleType)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	rec := newLogRecorder()
	host := startHost(t, Config{Dir: dir, RescanInterval: 20 * time.Millisecond}, slog.New(rec))
	_, err := host.For(t.Context(), exampleType)
	if !errors.Is(err, ports.ErrNoBackend) || !strings.Contains(err.Error(), "plugin directory "+dir+" is world-writable (mode 0777)") {
		t.Fatalf("For with a world-writable directory = %v", err)
	}
	if sts := host.Plugins(); len(sts) != 1 || sts[0].Path != dir || sts[0].State != StateRefused {
		t.Fatalf("Plugins = %+v, want the directory refused", sts)
	}
	if len(rec.find("plugin directory refused")) != 1 {
		t.Fatal("the refused directory is not logged once")
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	eventually(t, "loaded once the directory is fixed", func() bool {
		_, err := host.For(t.Context(), exampleType)
		return err == nil
	})
	if st := status(t, host, path); st.State != StateRunning {
		t.Fatalf("%+v", st)
	}
}

// TestSharedType: a storage type two plugins claim is served by neither,
// and For names both; their other types keep working.
func TestSharedType(t *testing.T) {
	dir := t.TempDir()
	const shared = "openstack.storage.type.shared"
	a := writePlugin(t, dir, "a", "-types="+shared+",openstack.storage.type.a")
	writePlugin(t, dir, "b", "-types="+shared)
	host := startHost(t, Config{Dir: dir}, nil)
	_, err := host.For(t.Context(), shared)
	if !errors.Is(err, ports.ErrNoBackend) || !strings.Contains(err.Error(), "plugins a and b in "+dir+" all claim it") {
		t.Fatalf("For(shared type) = %v", err)
	}
	be, err := host.For(t.Context(), "openstack.storage.type.a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := be.Info(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := status(t, host, a); st.State != StateRunning || st.Err == nil || !strings.Contains(st.Err.Error(), shared+" is also claimed by b") {
		t.Fatalf("a: %+v, want running with the conflict in Err", st)
	}
}

// TestRescan: a plugin added while running is loaded by the next scan, a
// changed one reloaded, a removed one unloaded and its process stopped.
func TestRescan(t *testing.T) {
	dir := t.TempDir()
	writePlugin(t, dir, "example", "-types="+exampleType)
	host := startHost(t, Config{Dir: dir, RescanInterval: 20 * time.Millisecond}, nil)
	const late, later = "openstack.storage.type.late", "openstack.storage.type.later"
	if _, err := host.For(t.Context(), late); !errors.Is(err, ports.ErrNoBackend) {
		t.Fatalf("For before the plugin is added = %v", err)
	}

	path := writePlugin(t, dir, "late", "-types="+late)
	eventually(t, "the added plugin loaded", func() bool {
		_, err := host.For(t.Context(), late)
		return err == nil
	})
	be, _ := host.For(t.Context(), late)
	pid := status(t, host, path).Pid

	// Changed: the new file's types are served, the old process stopped.
	writePlugin(t, dir, "late", "-types="+later)
	eventually(t, "the changed plugin reloaded", func() bool {
		_, err := host.For(t.Context(), later)
		return err == nil
	})
	if _, err := host.For(t.Context(), late); !errors.Is(err, ports.ErrNoBackend) {
		t.Fatalf("For(old type) after the change = %v", err)
	}
	eventually(t, "the old process stopped", func() bool { return !alive(pid) })
	if _, err := be.Info(t.Context()); !errors.Is(err, ports.ErrRetryable) || !strings.Contains(err.Error(), "unloaded") {
		t.Fatalf("a backend of the unloaded plugin = %v, want retryable saying it was unloaded", err)
	}

	pid = status(t, host, path).Pid
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the removed plugin unloaded", func() bool {
		_, err := host.For(t.Context(), later)
		return errors.Is(err, ports.ErrNoBackend)
	})
	eventually(t, "its process stopped", func() bool { return !alive(pid) })
	if len(host.Plugins()) != 1 {
		t.Fatalf("Plugins = %+v", host.Plugins())
	}
	if _, err := host.For(t.Context(), exampleType); err != nil {
		t.Fatal(err)
	}
}

// TestPluginLogs: what a plugin logs on stderr reaches the daemon's slog
// with the plugin's name. (The test plugin logs the names of its
// environment variables: the daemon's do not reach it, but PATH.)
func TestPluginLogs(t *testing.T) {
	t.Setenv("MIRROR_TEST_SECRET", "keyring")
	dir := t.TempDir()
	writePlugin(t, dir, "example", "-types="+exampleType)
	rec := newLogRecorder()
	startHost(t, Config{Dir: dir}, slog.New(rec))
	eventually(t, "the plugin's log line forwarded", func() bool { return len(rec.find("testplugin serving")) > 0 })
	r := rec.find("testplugin serving")[0]
	if r["plugin"] != "example" || r["level"] != "INFO" || r["storage_types"] != exampleType {
		t.Fatalf("plugin log record %v, want plugin=example at info with its attributes", r)
	}
	env := strings.Split(r["env"], ",")
	if !slices.Contains(env, "PATH") || slices.Contains(env, "MIRROR_TEST_SECRET") {
		t.Fatalf("the plugin's environment holds %v: want PATH, not the daemon's variables", env)
	}
	loaded := rec.find("plugin loaded")
	if len(loaded) != 1 || loaded[0]["plugin"] != "example" || loaded[0]["name"] != "memstorage" {
		t.Fatalf("load logged as %v", loaded)
	}
}

// TestPluginLogHygiene: integers a plugin logs stay integers, whether
// go-plugin parsed the line (before the plugin is served) or the host
// did (after), and no record carries a key twice: "plugin" is the file's
// name, "plugin_path" its path.
func TestPluginLogHygiene(t *testing.T) {
	dir := t.TempDir()
	path := writePlugin(t, dir, "example", "-types="+exampleType)
	rec := newLogRecorder()
	h := startHost(t, Config{Dir: dir}, slog.New(rec))
	eventually(t, "the plugin's log lines forwarded", func() bool { return len(rec.find("testplugin info")) > 0 })
	if r := rec.find("testplugin serving")[0]; r["bytes"] != "8388608" {
		t.Errorf("before it is served, the plugin's bytes=8388608 logged as %s", r["bytes"])
	}
	r := rec.find("testplugin info")[0]
	for k, v := range map[string]string{"bytes": "8388608", "big": "4611686018427387905", "ratio": "0.5"} {
		if r[k] != v {
			t.Errorf("once served, the plugin's %s logged as %s, want %s", k, r[k], v)
		}
	}
	h.Close()
	eventually(t, "go-plugin's exit record", func() bool { return len(rec.find("plugin process exited")) > 0 })
	exited := rec.find("plugin process exited")[0]
	if exited["plugin"] != "example" || exited["plugin_path"] != path {
		t.Errorf("exit logged as %v, want plugin=example plugin_path=%s", exited, path)
	}
	if d := rec.duplicateKeys(); len(d) > 0 {
		t.Errorf("records with a key twice: %v", d)
	}
}

// TestClose: Close stops every plugin process before it returns, and
// backends handed out before fail as retryable.
func TestClose(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for _, name := range []string{"a", "b", "c"} {
		paths = append(paths, writePlugin(t, dir, name, "-types=openstack.storage.type."+name))
	}
	host := startHost(t, Config{Dir: dir}, nil)
	be, err := host.For(t.Context(), "openstack.storage.type.a")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range paths {
		st := status(t, host, p)
		if !alive(st.Pid) {
			t.Fatalf("%+v not running", st)
		}
		pids = append(pids, st.Pid)
	}
	host.Close()
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still runs after Close", pid)
		}
	}
	if _, err := be.Info(t.Context()); !errors.Is(err, ports.ErrRetryable) {
		t.Fatalf("Info after Close = %v, want ErrRetryable", err)
	}
	if _, err := host.For(t.Context(), "openstack.storage.type.a"); !errors.Is(err, ports.ErrNoBackend) {
		t.Fatalf("For after Close = %v, want ErrNoBackend", err)
	}
	host.Close() // twice is fine
}

// TestForWaitsForFirstScan: For before Run's first scan waits for it,
// within ctx.
func TestForWaitsForFirstScan(t *testing.T) {
	host := New(Config{Dir: t.TempDir()}, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := host.For(ctx, exampleType); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("For before any scan = %v, want the ctx's error", err)
	}
	host.Close()
}

func TestExplainStart(t *testing.T) {
	err := explainStart(errors.New("incompatible API version with plugin. Plugin version: 7, Client versions: [1]"), time.Second)
	if want := "speaks plugin protocol version 7, this daemon speaks version 1"; !strings.Contains(err.Error(), want) {
		t.Fatalf("%v, want %q", err, want)
	}
	if err := explainStart(errors.New("timeout while waiting for plugin to start"), 3*time.Second); !strings.Contains(err.Error(), "within 3s") {
		t.Fatal(err)
	}
}

func TestKindOf(t *testing.T) {
	for kind, want := range map[error]error{
		sdk.ErrNotFound:          ports.ErrNotFound,
		sdk.ErrPrecondition:      ports.ErrPrecondition,
		sdk.ErrInProgress:        ports.ErrInProgress,
		sdk.ErrRetryable:         ports.ErrRetryable,
		context.Canceled:         ports.ErrRetryable,
		context.DeadlineExceeded: ports.ErrRetryable,
	} {
		if got := kindOf(kind); len(got) != 1 || got[0] != want {
			t.Errorf("kindOf(%v) = %v, want %v", kind, got, want)
		}
	}
	if got := kindOf(nil); got != nil {
		t.Errorf("kindOf(nil) = %v", got)
	}
}

// TestRestartVerifiesChecksum: a plugin is started again only from the
// binary verified at load: when its file changed since (and no scan has
// reloaded it yet), go-plugin's check at exec refuses it, and calls fail
// as retryable saying why.
func TestRestartVerifiesChecksum(t *testing.T) {
	dir := t.TempDir()
	path := writePlugin(t, dir, "example", "-types="+exampleType)
	host := startHost(t, Config{Dir: dir, RescanInterval: time.Hour}, nil)
	be, err := host.For(t.Context(), exampleType)
	if err != nil {
		t.Fatal(err)
	}
	pid := status(t, host, path).Pid
	writePlugin(t, dir, "example", "-types="+exampleType, "-mode=crash")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the restart refused", func() bool {
		_, err := be.Info(t.Context())
		if err != nil && !errors.Is(err, ports.ErrRetryable) {
			t.Fatalf("Info = %v, want ErrRetryable", err)
		}
		return err != nil && strings.Contains(err.Error(), "could not be started again (the file changed after its checksum was verified")
	})
	st := status(t, host, path)
	if st.State != StateRestarting || st.Err == nil || !strings.Contains(st.Err.Error(), "checksum") {
		t.Fatalf("%+v, want restarting with the checksum error", st)
	}
}
