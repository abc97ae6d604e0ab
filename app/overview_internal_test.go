package app

import (
	"fmt"
	"testing"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// BenchmarkOverview reads the overview of a cache holding 10,000 volumes
// (record, operation, status, leader key each), a third of them led here.
func BenchmarkOverview(b *testing.B) {
	cfg := Config{}.WithDefaults()
	e := &Engine{cfg: cfg, cache: newCache()}
	e.monitor = &monitor{held: map[core.Resource]*lead{}}
	env := core.EnvironmentID{Source: 11, Target: 13}
	put := func(k, v string) { e.cache.set(ports.KeyValue{Key: k, Value: []byte(v), ModRevision: 1}) }
	put(core.EnvironmentKey(env), `{}`)
	put(core.EnvironmentStatusKey(env), `{"state_code":"mirroring"}`)
	for i := range 10000 {
		v := core.VolumeRef{Env: env, VolumeID: uint64(i + 1)}
		put(core.VolumeKey(v), `{"source_volume":{"volume_id":1}}`)
		put(core.VolumeOperationKey(v), `{"operation":"start"}`)
		put(core.VolumeStatusKey(v), fmt.Sprintf(`{"state_code":"mirroring","operation":"start","last_sync_time":"2026-12-01T05:00:00Z","lag":"1s","owner":"d%d","updated_at":"2026-12-01T05:00:00Z"}`, i%3))
		put(core.LeaderKey(cfg.LeaderPrefix, core.VolumeKey(v)), "d")
		if i%3 == 0 {
			e.monitor.held[core.VolumeResource(v)] = &lead{}
		}
	}
	b.ResetTimer()
	for b.Loop() {
		o := e.Overview()
		if o.Volumes["mirroring"] != 10000 || len(o.LedVolumes) != 3334 {
			b.Fatalf("overview: %d mirroring, %d led", o.Volumes["mirroring"], len(o.LedVolumes))
		}
	}
}
