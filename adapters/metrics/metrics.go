// Package metrics measures mirrord for Prometheus: the engine's reconciles
// (ports.Metrics), the calls into the storage backends and the events
// reported (decorators of ports.Backends and ports.EventReporter), and, at
// each scrape, what the daemon sees and leads (ports.Overview), its
// session and its plugins' restarts. Every metric is named mirror_* and
// lives in a registry of its own, never the process-wide default.
//
// Cardinality: labels take values from small fixed sets (states, kinds,
// backend methods, error classes, event codes, storage types, plugin
// files), except the per-volume gauges, which cover only the volumes this
// daemon leads: each volume is exported by one daemon at a time.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cdmdr/mirror/ports"
)

// Metrics holds mirrord's metrics and serves them.
type Metrics struct {
	reg         *prometheus.Registry
	reconcile   *prometheus.HistogramVec
	backendTime *prometheus.HistogramVec
	backendErrs *prometheus.CounterVec
	events      *prometheus.CounterVec
}

var _ ports.Metrics = (*Metrics)(nil)

// latencyBuckets span a quick reconcile (ms) to a long backend action
// (the action timeout is 5 min).
var latencyBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// New returns the metrics, registered in a registry of their own with the
// Go runtime's and the process's collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		reconcile: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mirror_reconcile_duration_seconds",
			Help:    "Time one reconcile of an environment or volume took, backend calls included, by kind and result (ok, error).",
			Buckets: latencyBuckets,
		}, []string{"kind", "result"}),
		backendTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mirror_backend_call_duration_seconds",
			Help:    "Time a call into a storage backend (plugin) took, by storage type and method, failed calls included.",
			Buckets: latencyBuckets,
		}, []string{"storage_type", "method"}),
		backendErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirror_backend_call_errors_total",
			Help: "Calls into a storage backend that returned an error, by storage type, method and error class (in_progress, not_found, precondition, retryable, timeout, canceled, other).",
		}, []string{"storage_type", "method", "error"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirror_events_total",
			Help: "Events this daemon reported, by code and level.",
		}, []string{"code", "level"}),
	}
	m.reg.MustRegister(m.reconcile, m.backendTime, m.backendErrs, m.events,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// Registry is where the metrics are registered, for more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in Prometheus's text format (or what the
// scraper negotiates).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Reconciled implements ports.Metrics.
func (m *Metrics) Reconciled(kind string, took time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.reconcile.WithLabelValues(kind, result).Observe(took.Seconds())
}
