package cephrbd

import (
	"slices"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// BenchmarkCephVolumeStatus is the storage's own answer time behind each
// status poll of a replicating volume (docs/benchmarks.md): the plugin
// in-process, so no process boundary is counted.
//
//	CEPH_LAB=$PWD/var/ceph-lab go test -tags pacific -run '^$' -bench CephVolumeStatus ./plugins/ceph/cephrbd/
func BenchmarkCephVolumeStatus(b *testing.B) {
	for _, mode := range []string{modeJournal, modeSnapshot} {
		b.Run(mode, func(b *testing.B) {
			r := newRig(b, mode)
			h := r.newHarness(b)
			startReplaying(b, r, h)
			ctx := b.Context()
			var lat []time.Duration
			for b.Loop() {
				begin := time.Now()
				st, err := r.be.VolumeStatus(ctx, h.vol)
				lat = append(lat, time.Since(begin))
				if err != nil || st.State != sdk.ReplicationReplaying {
					b.Fatalf("VolumeStatus = %+v, %v; want replaying", st, err)
				}
			}
			p50, p99 := percentiles(lat)
			b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkCephVolumeStatuses is the storage's answer time behind one
// bulk status poll of sdk.MaxVolumeStatuses volumes: one replicating
// volume among ones the storage does not know, so every answer comes from
// the pool lists (a volume's first copy would be asked one by one).
//
//	CEPH_LAB=$PWD/var/ceph-lab go test -tags pacific -run '^$' -bench CephVolumeStatuses ./plugins/ceph/cephrbd/
func BenchmarkCephVolumeStatuses(b *testing.B) {
	for _, mode := range []string{modeJournal, modeSnapshot} {
		b.Run(mode, func(b *testing.B) {
			r := newRig(b, mode)
			h := r.newHarness(b)
			startReplaying(b, r, h)
			vols := []sdk.Volume{h.vol}
			for len(vols) < sdk.MaxVolumeStatuses {
				v := h.vol
				v.VolumeUUID = plugintest.NewUUID()
				vols = append(vols, v)
			}
			ctx := b.Context()
			var lat []time.Duration
			for b.Loop() {
				begin := time.Now()
				reps, err := r.be.VolumeStatuses(ctx, h.env, vols)
				lat = append(lat, time.Since(begin))
				if err != nil || len(reps) != len(vols) {
					b.Fatalf("VolumeStatuses = %d answers, %v; want %d", len(reps), err, len(vols))
				}
			}
			p50, p99 := percentiles(lat)
			b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
		})
	}
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)*99/100]
}
