package metrics

import (
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdmdr/mirror/ports"
)

// Sources are what the daemon reads at each scrape. A nil field is not
// exported.
type Sources struct {
	// Overview is what the daemon sees and leads (app.Engine.Overview).
	Overview func() ports.Overview
	// SessionHeld says whether the daemon holds its election session.
	SessionHeld func() bool
	// PluginRestarts counts, by plugin file, the restarts of each loaded
	// plugin's process.
	PluginRestarts func() map[string]int
	// Now is the clock last-sync ages are read on (default time.Now).
	Now func() time.Time
}

// Watch exports, at each scrape, what s reads.
func (m *Metrics) Watch(s Sources) {
	if s.Now == nil {
		s.Now = time.Now
	}
	m.reg.MustRegister(daemonCollector{s})
}

var (
	descVolumes = prometheus.NewDesc("mirror_volumes",
		"Volumes in the store by the state of their status (\"\" before the first status); every daemon sees all of them.", []string{"state"}, nil)
	descEnvironments = prometheus.NewDesc("mirror_environments",
		"Environments in the store by the state of their status; every daemon sees all of them.", []string{"state"}, nil)
	descUnled = prometheus.NewDesc("mirror_unled",
		"Environments and volumes in the store whose leader key is absent: no daemon leads them.", []string{"kind"}, nil)
	descLed = prometheus.NewDesc("mirror_led",
		"Environments and volumes this daemon leads.", []string{"kind"}, nil)
	descPending = prometheus.NewDesc("mirror_snapshots_pending",
		"Snapshot records of the volumes this daemon leads whose recovery point is not on the target yet.", nil, nil)
	descSyncAge = prometheus.NewDesc("mirror_volume_last_sync_age_seconds",
		"Seconds since the target of a volume this daemon leads last caught up with its source (absent while unknown).", []string{"environment", "volume"}, nil)
	descLag = prometheus.NewDesc("mirror_volume_lag_seconds",
		"How far behind its source the target of a volume this daemon leads is, when the backend reports it as a duration.", []string{"environment", "volume"}, nil)
	descVolumeState = prometheus.NewDesc("mirror_volume_state",
		"1 for the state of each volume this daemon leads.", []string{"environment", "volume", "state"}, nil)
	descSession = prometheus.NewDesc("mirror_session_held",
		"1 while the daemon holds its election session (its leader keys live), else 0.", nil, nil)
	descRestarts = prometheus.NewDesc("mirror_plugin_restarts_total",
		"Restarts of a loaded plugin's process, by plugin file.", []string{"plugin"}, nil)
)

// daemonCollector reads Sources when scraped.
type daemonCollector struct{ s Sources }

func (c daemonCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descVolumes, descEnvironments, descUnled, descLed, descPending,
		descSyncAge, descLag, descVolumeState, descSession, descRestarts} {
		ch <- d
	}
}

func (c daemonCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if c.s.Overview != nil {
		o := c.s.Overview()
		for _, st := range slices.Sorted(maps.Keys(o.Volumes)) {
			gauge(descVolumes, float64(o.Volumes[st]), st)
		}
		for _, st := range slices.Sorted(maps.Keys(o.Environments)) {
			gauge(descEnvironments, float64(o.Environments[st]), st)
		}
		gauge(descUnled, float64(o.UnledEnvironments), "environment")
		gauge(descUnled, float64(o.UnledVolumes), "volume")
		gauge(descLed, float64(o.LedEnvironments), "environment")
		gauge(descLed, float64(len(o.LedVolumes)), "volume")
		gauge(descPending, float64(o.SnapshotsPending))
		now := c.s.Now()
		for _, v := range o.LedVolumes {
			gauge(descVolumeState, 1, v.Environment, v.Volume, v.State)
			if !v.LastSync.IsZero() {
				gauge(descSyncAge, max(now.Sub(v.LastSync).Seconds(), 0), v.Environment, v.Volume)
			}
			if lag, err := time.ParseDuration(v.Lag); err == nil {
				gauge(descLag, lag.Seconds(), v.Environment, v.Volume)
			}
		}
	}
	if c.s.SessionHeld != nil {
		held := 0.0
		if c.s.SessionHeld() {
			held = 1
		}
		gauge(descSession, held)
	}
	if c.s.PluginRestarts != nil {
		rs := c.s.PluginRestarts()
		for _, p := range slices.Sorted(maps.Keys(rs)) {
			ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(rs[p]), p)
		}
	}
}
