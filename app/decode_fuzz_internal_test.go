package app

import (
	"bytes"
	"testing"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// FuzzDecodeVolumeKeys feeds a volume's key sorter two keys: one under
// the volume (its suffix fuzzed) and one of a neighbour whose id starts
// with the same digits (volume.90 beside volume.9). Only the volume's own
// keys count, a status counts only if it is a valid volume state, and no
// value is altered on the way.
func FuzzDecodeVolumeKeys(f *testing.F) {
	status := []byte(`{"state_code":"mirroring","operation":"start"}`)
	for _, s := range []struct {
		suffix string
		value  []byte
	}{
		{"", []byte(`{"source_volume":{}}`)},
		{"/operation", []byte(`{"operation":"start"}`)},
		{"/status", status},
		{"/status", []byte(`{"state_code":"sleeping"}`)},
		{"/status", []byte(`{"state_code":"mirroring","progress":"x"}`)},
		{"/snapshot.21", []byte(`{}`)},
		{"/snapshot.21/status", status},
		{"/snapshot.021/status", status},
		{"0/status", status},
		{"/snapshot.18446744073709551616", []byte(`{}`)},
		{"/../volume.8/status", status},
		{"/ status", status},
		{"/snapshot.1/status/x", status},
	} {
		f.Add(s.suffix, s.value, status)
	}
	ref := core.VolumeRef{Env: core.EnvironmentID{Source: 11, Target: 13}, VolumeID: 9}
	neighbour := core.VolumeRef{Env: ref.Env, VolumeID: 90}
	f.Fuzz(func(t *testing.T, suffix string, value, other []byte) {
		key := core.VolumeKey(ref) + suffix
		v := decodeVolumeKeys(ref, []ports.KeyValue{
			{Key: key, Value: value},
			{Key: core.VolumeStatusKey(neighbour), Value: other},
			{Key: core.VolumeOperationKey(neighbour), Value: other},
		})
		pk, err := core.ParseKey(key)
		ours := err == nil && pk.Volume == ref
		if !ours {
			if !v.empty() {
				t.Fatalf("key %q (not volume 9's) or a neighbour's counted: %+v", key, v)
			}
			return
		}
		if pk.Kind != core.KindVolumeOperation && v.operation != nil || pk.Kind != core.KindVolumeStatus && v.status != nil {
			t.Fatalf("a neighbour's keys counted beside %q: %+v", key, v)
		}
		switch pk.Kind {
		case core.KindVolume:
			if !bytes.Equal(v.record, value) {
				t.Fatalf("record %q read as %q", value, v.record)
			}
		case core.KindVolumeOperation:
			if !bytes.Equal(v.operation, value) {
				t.Fatalf("operation %q read as %q", value, v.operation)
			}
		case core.KindVolumeStatus:
			st, err := core.DecodeStatus(value)
			valid := err == nil && core.ValidVolumeState(st.StateCode)
			if valid != (v.status != nil) {
				t.Fatalf("status %q (decodes: %v, %v) taken: %v", value, st, err, v.status != nil)
			}
			if valid && !v.status.Same(st) {
				t.Fatalf("status %q read as %+v", value, *v.status)
			}
		case core.KindSnapshot, core.KindSnapshotStatus:
			s, ok := v.snapshots[pk.Snapshot.SnapshotID]
			if !ok || len(v.snapshots) != 1 {
				t.Fatalf("snapshot key %q sorted as %+v", key, v.snapshots)
			}
			if pk.Kind == core.KindSnapshot && !bytes.Equal(s.record, value) {
				t.Fatalf("snapshot record %q read as %q", value, s.record)
			}
			if _, err := core.DecodeStatus(value); pk.Kind == core.KindSnapshotStatus && (err == nil) != (s.status != nil) {
				t.Fatalf("snapshot status %q (error %v) taken: %v", value, err, s.status != nil)
			}
		default:
			t.Fatalf("key %q of kind %s parsed as volume 9's", key, pk.Kind)
		}
	})
}

// FuzzStateOf checks the overview's quick read of a status: where the
// full decoder accepts a status, both read the same state.
func FuzzStateOf(f *testing.F) {
	for _, s := range []string{`{"state_code":"mirroring"}`, `{"state_code":"error","error_reason":{"code":"c","contents":"x"}}`,
		`{"state_code":3}`, `{"state_code":"mirroring"`, ``, `null`, `{"state_code":"paused","state_code":"mirroring"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := stateOf(data)
		if st, err := core.DecodeStatus(data); err == nil && got != string(st.StateCode) {
			t.Fatalf("stateOf(%q) = %q, the decoder says %q", data, got, st.StateCode)
		}
	})
}
