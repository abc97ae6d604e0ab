package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cdmdr/mirror/core"
)

// get asks one of the daemon's endpoints: status code and body.
func (d *daemon) get(t *testing.T, path string) (int, string) {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get("http://" + d.httpAddr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// scrape reads /metrics with Prometheus's own text parser.
func (d *daemon) scrape(t *testing.T) scraped {
	t.Helper()
	code, body := d.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse as Prometheus text: %v\n%s", err, body)
	}
	return mfs
}

type scraped map[string]*dto.MetricFamily

// value is the gauge, counter or histogram count of the series of name
// with exactly these labels; -1 when there is none.
func (s scraped) value(name string, labels ...string) float64 {
	mf := s[name]
	if mf == nil {
		return -1
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, l := range m.GetLabel() {
			if want[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// sum adds the values (histogram counts) of every series of name.
func (s scraped) sum(name string) float64 {
	var n float64
	for _, m := range s[name].GetMetric() {
		n += m.GetGauge().GetValue() + m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
	}
	return n
}

// A running mirrord with the example plugin as a process, scraped over
// HTTP: the volumes by state, the backend calls, the leads, a plugin
// restart; /healthz and /readyz, also while etcd is cut off.
func TestMetricsAndReadinessOfARunningDaemon(t *testing.T) {
	dir := buildExamplePlugin(t)
	c := newCluster(t)
	d := c.startWithPlugins("d1", dir, func(cfg *Config) { cfg.HTTPAddress = "127.0.0.1:0" })
	if d.httpAddr == "" {
		t.Fatal("no HTTP endpoints with http_address set")
	}
	if code, body := d.get(t, "/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	ready := func() bool { code, _ := d.get(t, "/readyz"); return code == http.StatusOK }
	c.waitFor("/readyz 200", 20*time.Second, ready)

	for _, s := range []string{"clusters/5/storages/11", "clusters/6/storages/13"} {
		parts := strings.Split(s, "/")
		c.put(s, `{"cluster_id":`+parts[1]+`,"storage_id":`+parts[3]+`,"type":"`+exampleType+`","backend_name":"example"}`)
		c.put(s+"/metadata", `{"pool":"volumes"}`)
	}
	c.seedEnvironment("start")
	c.waitState("mirror_environment/storage.11.13/status", core.StateMirroring)
	ref := seedVol7
	c.put(core.VolumeKey(ref), `{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":7,"volume_uuid":"`+seedUUID+`"},"source_agent":{"ip":"192.168.137.101","port":8080}}`)
	c.setOp(ref, "start")
	c.waitState(core.VolumeStatusKey(ref), core.StateMirroring)

	m := d.scrape(t)
	for _, want := range []struct {
		name   string
		labels []string
		v      float64
	}{
		{"mirror_volumes", []string{"state", "mirroring"}, 1},
		{"mirror_environments", []string{"state", "mirroring"}, 1},
		{"mirror_led", []string{"kind", "volume"}, 1},
		{"mirror_led", []string{"kind", "environment"}, 1},
		{"mirror_unled", []string{"kind", "volume"}, 0},
		{"mirror_volume_state", []string{"environment", "storage.11.13", "volume", "volume.7", "state", "mirroring"}, 1},
		{"mirror_session_held", nil, 1},
		{"mirror_plugin_restarts_total", []string{"plugin", "example"}, 0},
		{"mirror_backend_call_duration_seconds", []string{"storage_type", exampleType, "method", "StartVolume"}, 1},
	} {
		if got := m.value(want.name, want.labels...); got != want.v {
			t.Errorf("%s%v = %v, want %v", want.name, want.labels, got, want.v)
		}
	}
	if n := m.value("mirror_reconcile_duration_seconds", "kind", "volume", "result", "ok"); n < 1 {
		t.Errorf("volume reconciles measured: %v, want some", n)
	}
	calls := m.sum("mirror_backend_call_duration_seconds")

	// A pause: the state gauge and the backend calls follow.
	c.setOp(ref, "pause")
	c.waitState(core.VolumeStatusKey(ref), core.StatePaused)
	m = d.scrape(t)
	if got := m.value("mirror_volumes", "state", "paused"); got != 1 {
		t.Errorf("mirror_volumes{state=paused} = %v after the pause, want 1", got)
	}
	if got := m.value("mirror_backend_call_duration_seconds", "storage_type", exampleType, "method", "PauseVolume"); got != 1 {
		t.Errorf("PauseVolume calls measured: %v, want 1", got)
	}
	if after := m.sum("mirror_backend_call_duration_seconds"); after <= calls {
		t.Errorf("backend calls measured %v, then %v after a pause: want more", calls, after)
	}

	// The plugin's process killed: its restart is counted.
	out, _ := exec.Command("pgrep", "-f", filepath.Join(dir, "example")).Output()
	pids := strings.Fields(string(out))
	if len(pids) != 1 {
		t.Fatalf("plugin processes: %q, want one", pids)
	}
	pid, _ := strconv.Atoi(pids[0])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.waitFor("the plugin's restart counted", 20*time.Second, func() bool {
		return d.scrape(t).value("mirror_plugin_restarts_total", "plugin", "example") == 1
	})

	// etcd cut off: not ready, saying why; past the session's TTL the
	// session is gone too. Ready again once etcd is back.
	c.etcd.Disconnect()
	c.waitFor("/readyz 503 naming etcd, then the session", 20*time.Second, func() bool {
		code, body := d.get(t, "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "etcd: unreachable") &&
			strings.Contains(body, "session: no election session held")
	})
	if got := d.scrape(t).value("mirror_session_held"); got != 0 {
		t.Errorf("mirror_session_held = %v with the session lost, want 0", got)
	}
	if code, _ := d.get(t, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d while etcd is cut off: the process still serves", code)
	}
	c.etcd.Reconnect()
	c.waitFor("/readyz 200 again", 20*time.Second, ready)

	c.setOp(ref, "stop_and_delete")
	c.waitGone(core.VolumeKey(ref))
	c.waitFor("the finished volume's event counted", 20*time.Second, func() bool {
		return d.scrape(t).sum("mirror_events_total") > 0
	})
	d.stop()
	if _, err := http.Get("http://" + d.httpAddr + "/healthz"); err == nil {
		t.Error("the endpoints still answer after the daemon stopped")
	}
}

// A daemon whose plugin directory holds no plugin is alive but not
// ready, and says why.
func TestReadyNotWithoutPlugins(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t)
	d := c.startWithPlugins("d1", dir, func(cfg *Config) { cfg.HTTPAddress = "127.0.0.1:0" })
	// The session is held once the daemon announced itself: from then
	// on, only the plugins are missing.
	c.waitFor("the daemon announced", 20*time.Second, func() bool { return c.get("mirror_leader/daemons/d1") != "" })
	code, body := d.get(t, "/readyz")
	if code != http.StatusServiceUnavailable || strings.TrimSpace(body) != "plugins: no plugin loaded yet" {
		t.Fatalf("/readyz = %d %q, want 503 naming only the plugins", code, body)
	}
	if code, _ := d.get(t, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
}

// http_address: loopback by default, from the flag, the environment or
// the file; empty serves nothing.
func TestMetricsHTTPAddressConfig(t *testing.T) {
	cfg, err := loadConfig(nil, env(nil), io.Discard)
	if err != nil || cfg.HTTPAddress != "127.0.0.1:9464" {
		t.Fatalf("default: %q, %v", cfg.HTTPAddress, err)
	}
	cfg, err = loadConfig(nil, env(map[string]string{"MIRRORD_HTTP_ADDRESS": "0.0.0.0:9500"}), io.Discard)
	if err != nil || cfg.HTTPAddress != "0.0.0.0:9500" {
		t.Fatalf("from the environment: %q, %v", cfg.HTTPAddress, err)
	}
	cfg, err = loadConfig([]string{"--http-address="}, env(map[string]string{"MIRRORD_HTTP_ADDRESS": "0.0.0.0:9500"}), io.Discard)
	if err != nil || cfg.HTTPAddress != "" {
		t.Fatalf("emptied by the flag: %q, %v", cfg.HTTPAddress, err)
	}
	file := filepath.Join(t.TempDir(), "mirrord.yaml")
	if err := os.WriteFile(file, []byte("http_address: \"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = loadConfig([]string{"--config", file}, env(nil), io.Discard)
	if err != nil || cfg.HTTPAddress != "" {
		t.Fatalf("emptied by the file: %q, %v", cfg.HTTPAddress, err)
	}
	// An address taken: the daemon does not start, and says where.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := newCluster(t)
	cfg = c.config("d1")
	cfg.HTTPAddress = ln.Addr().String()
	_, _, err = initDaemonWith(t.Context(), cfg, slog.New(slog.DiscardHandler), c.backends)
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("start on a taken address: %v, want an error naming it", err)
	}
}
