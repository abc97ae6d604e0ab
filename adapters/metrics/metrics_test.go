package metrics_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cdmdr/mirror/adapters/fake"
	"github.com/cdmdr/mirror/adapters/metrics"
	"github.com/cdmdr/mirror/ports"
)

const typ = "openstack.storage.type.test"

// scrape serves m's handler once and parses the answer as Prometheus does.
func scrape(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, rec.Body.String())
	}
	return mfs
}

// series renders each series of name as `{a="x",b="y"} value` (a
// histogram's value is its count), sorted as the registry sorts them.
func series(mfs map[string]*dto.MetricFamily, name string) []string {
	var out []string
	for _, m := range mfs[name].GetMetric() {
		var ls []string
		for _, l := range m.GetLabel() {
			ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
		}
		v := m.GetGauge().GetValue() + m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
		out = append(out, fmt.Sprintf("{%s} %g", strings.Join(ls, ","), v))
	}
	return out
}

func expect(t *testing.T, mfs map[string]*dto.MetricFamily, name string, want ...string) {
	t.Helper()
	if got := series(mfs, name); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n got %q\nwant %q", name, got, want)
	}
}

func TestMetricsBackendCallsEventsAndReconciles(t *testing.T) {
	m := metrics.New()
	b := fake.NewBackend(typ)
	bs := m.Backends(fake.NewBackends(map[string]ports.StorageBackend{typ: b}))
	ctx := context.Background()
	be, err := bs.For(ctx, typ)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bs.For(ctx, "openstack.storage.type.none"); err == nil {
		t.Fatal("a type no backend serves: want its error through the decorator")
	}
	if _, err := be.Info(ctx); err != nil {
		t.Fatal(err)
	}
	b.FailNext("Info", fmt.Errorf("copy under way: %w", ports.ErrInProgress))
	if _, err := be.Info(ctx); err == nil {
		t.Fatal("the scripted failure did not come through the decorator")
	}
	b.FailNext("Info", context.DeadlineExceeded)
	_, _ = be.Info(ctx)

	events := fake.NewEvents()
	r := m.Events(events)
	r.Report(ctx, ports.Event{Code: "cdm-dr.mirror.volume.finished-stop", Level: ports.LevelInfo})
	r.Report(ctx, ports.Event{Code: "cdm-dr.mirror.volume.finished-stop", Level: ports.LevelInfo})
	if len(events.Events()) != 2 {
		t.Fatalf("events passed on: %d, want 2", len(events.Events()))
	}

	m.Reconciled("volume", 3*time.Millisecond, nil)
	m.Reconciled("environment", time.Second, fmt.Errorf("boom"))

	mfs := scrape(t, m)
	expect(t, mfs, "mirror_backend_call_duration_seconds", `{method="Info",storage_type="`+typ+`"} 3`)
	expect(t, mfs, "mirror_backend_call_errors_total",
		`{error="in_progress",method="Info",storage_type="`+typ+`"} 1`,
		`{error="timeout",method="Info",storage_type="`+typ+`"} 1`)
	expect(t, mfs, "mirror_events_total", `{code="cdm-dr.mirror.volume.finished-stop",level="info"} 2`)
	expect(t, mfs, "mirror_reconcile_duration_seconds",
		`{kind="environment",result="error"} 1`, `{kind="volume",result="ok"} 1`)
	if mfs["go_goroutines"] == nil {
		t.Error("the Go runtime's metrics are missing")
	}
}

func TestMetricsOfTheDaemonAtScrape(t *testing.T) {
	now := time.Date(2026, 12, 1, 5, 0, 0, 0, time.UTC)
	held := true
	m := metrics.New()
	m.Watch(metrics.Sources{
		Overview: func() ports.Overview {
			return ports.Overview{
				Volumes:      map[string]int{"mirroring": 2, "error": 1},
				Environments: map[string]int{"mirroring": 1},
				UnledVolumes: 1, LedEnvironments: 1, SnapshotsPending: 3,
				LedVolumes: []ports.LedVolume{
					{Environment: "storage.11.13", Volume: "volume.7", State: "mirroring", LastSync: now.Add(-90 * time.Second), Lag: "1m30s"},
					{Environment: "storage.11.13", Volume: "volume.8", State: "error", Lag: "12 entries"},
				},
			}
		},
		SessionHeld:    func() bool { return held },
		PluginRestarts: func() map[string]int { return map[string]int{"ceph": 2} },
		Now:            func() time.Time { return now },
	})
	mfs := scrape(t, m)
	expect(t, mfs, "mirror_volumes", `{state="error"} 1`, `{state="mirroring"} 2`)
	expect(t, mfs, "mirror_environments", `{state="mirroring"} 1`)
	expect(t, mfs, "mirror_unled", `{kind="environment"} 0`, `{kind="volume"} 1`)
	expect(t, mfs, "mirror_led", `{kind="environment"} 1`, `{kind="volume"} 2`)
	expect(t, mfs, "mirror_snapshots_pending", `{} 3`)
	// Ages and lags only where known; a lag in entries is no duration.
	expect(t, mfs, "mirror_volume_last_sync_age_seconds", `{environment="storage.11.13",volume="volume.7"} 90`)
	expect(t, mfs, "mirror_volume_lag_seconds", `{environment="storage.11.13",volume="volume.7"} 90`)
	expect(t, mfs, "mirror_volume_state",
		`{environment="storage.11.13",state="error",volume="volume.8"} 1`,
		`{environment="storage.11.13",state="mirroring",volume="volume.7"} 1`)
	expect(t, mfs, "mirror_session_held", `{} 1`)
	expect(t, mfs, "mirror_plugin_restarts_total", `{plugin="ceph"} 2`)
	if mfs["mirror_plugin_restarts_total"].GetType() != dto.MetricType_COUNTER {
		t.Error("mirror_plugin_restarts_total is not a counter")
	}

	held = false
	expect(t, scrape(t, m), "mirror_session_held", `{} 0`)
}
