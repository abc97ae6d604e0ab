package core_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/cdmdr/mirror/core"
)

// Fuzz targets for every decoder of etcd values and bus messages
// (docs/contract.md §2 and §5). Each checks what can fail: a decode error
// is one of core's sentinels, names the record it is about and never
// returns half a value; what decodes encodes to something that decodes to
// the same value. `make fuzz` runs each for longer; `go test` runs the
// seeds below as plain tests.

// malformedSeeds are inputs every record decoder must refuse cleanly.
var malformedSeeds = []string{
	``, ` `, `null`, `[]`, `"x"`, `7`, `{`, `{"a":`, `{"cluster_id":"6"}`, "\x00", "\xff\xfe",
	`{"cluster_id":18446744073709551616,"storage_id":13,"type":"t"}`,
	`{"cluster_id":-1,"storage_id":13,"type":"t"}`,
	`{"cluster_id":6.5,"storage_id":13,"type":"t"}`,
	`{"cluster_id":1e3,"storage_id":13,"type":"t"}`,
	`{"state_code":"mirroring","progress":9223372036854775808}`,
	`{"state_code":"mirroring","updated_at":"10000-01-01T00:00:00Z"}`,
	`{"state_code":"mirroring","updated_at":"2024-01-01T00:00:00+99:00"}`,
	`{"state_code":"mirroring","last_sync_time":"0000-01-01T00:00:00-23:59"}`,
	`{"operation":"start","force":"yes"}`,
	`{"operation":["start"]}`,
}

// addSeeds adds the record's own seeds, then malformedSeeds.
func addSeeds(f *testing.F, good ...string) {
	for _, s := range good {
		f.Add([]byte(s))
	}
	for _, s := range malformedSeeds {
		f.Add([]byte(s))
	}
}

// wantClearErr checks a decode error: one of core's sentinels, a message
// that starts with what was being decoded, and a zero value beside it.
func wantClearErr(t *testing.T, err error, prefix string, got, zero any) {
	t.Helper()
	if !errors.Is(err, core.ErrMalformed) && !errors.Is(err, core.ErrContradiction) && !errors.Is(err, core.ErrUnknownOperation) {
		t.Fatalf("error %q wraps none of core's sentinels", err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, prefix) || len(msg) <= len(prefix)+2 {
		t.Fatalf("error %q does not start with %q and say more", msg, prefix)
	}
	if !reflect.DeepEqual(got, zero) {
		t.Fatalf("decode failed with %v but returned %+v", err, got)
	}
}

// encodeJSON marshals v, failing the test (not panicking) if it cannot.
func encodeJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("a decoded %T does not encode: %v", v, err)
	}
	return b
}

func FuzzDecodeStorage(f *testing.F) {
	addSeeds(f, seedStorage613, `{"cluster_id": 6, "storage_id": 13, "type": "openstack.storage.type.lvm", "status": "x"}`,
		`{"cluster_id":6,"storage_id":13,"type":""}`, `{"cluster_id":6,"storage_id":14,"type":"t"}`, `{"storage_id":13,"type":"t"}`)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := core.DecodeStorage(stor613, data)
		if err != nil {
			wantClearErr(t, err, "storage "+core.StorageKey(stor613)+": ", s, core.Storage{})
			return
		}
		if s.Ref() != stor613 || s.Type == "" {
			t.Fatalf("decoded %+v for %s", s, core.StorageKey(stor613))
		}
		again, err := core.DecodeStorage(stor613, encodeJSON(t, s))
		if err != nil || again != s {
			t.Fatalf("round trip of %+v = %+v, %v", s, again, err)
		}
	})
}

func FuzzDecodeStorageMetadata(f *testing.F) {
	addSeeds(f, seedMetadata, `{}`, `{"pool":"volumes","keyring":"AQD9R+FhdwTFMRAADjntqI2NKiW93thZ523ClA=="`, `{"a":1}{"b":2}`)
	key := core.StorageMetadataKey(stor613)
	f.Fuzz(func(t *testing.T, data []byte) {
		meta, err := core.DecodeStorageMetadata(stor613, data)
		if err != nil {
			// The value may hold keyrings: the error is the same words,
			// whatever the value.
			if want := "storage metadata " + key + ": malformed record: not a JSON object"; err.Error() != want {
				t.Fatalf("error %q, want exactly %q", err, want)
			}
			if !errors.Is(err, core.ErrMalformed) || meta != nil {
				t.Fatalf("error %v with metadata %q", err, meta)
			}
			return
		}
		// Passed on to the backend byte for byte, and a copy.
		if !bytes.Equal(meta, data) {
			t.Fatalf("metadata %q changed to %q", data, meta)
		}
		if len(data) > 0 {
			data[0] ^= 0xff
			if bytes.Equal(meta, data) {
				t.Fatalf("metadata shares the caller's buffer")
			}
			data[0] ^= 0xff
		}
		if _, err := core.DecodeStorageMetadata(stor613, meta); err != nil {
			t.Fatalf("accepted metadata refused the second time: %v", err)
		}
	})
}

func FuzzDecodeEnvironment(f *testing.F) {
	addSeeds(f, seedEnv, `{"source_cluster_storage":{"cluster_id":5,"storage_id":11}}`,
		`{"source_cluster_storage":{"cluster_id":5,"storage_id":13},"target_cluster_storage":{"cluster_id":6,"storage_id":13}}`,
		`{"source_cluster_storage":null,"target_cluster_storage":{"cluster_id":6,"storage_id":13}}`,
		`{"source_cluster_storage":{"cluster_id":"5","storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13}}`)
	key := core.EnvironmentKey(env1113)
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := core.DecodeEnvironment(env1113, data)
		if err != nil {
			// Errors from the pair check start with the key alone.
			prefix := "environment " + key + ": "
			if errors.Is(err, core.ErrContradiction) {
				prefix = key + ": "
			}
			wantClearErr(t, err, prefix, spec, core.EnvironmentSpec{})
			return
		}
		if spec.Source.StorageID != env1113.Source || spec.Target.StorageID != env1113.Target {
			t.Fatalf("decoded %+v for %s", spec, key)
		}
		again, err := core.DecodeEnvironment(env1113, encodeJSON(t, spec))
		if err != nil || again != spec {
			t.Fatalf("round trip of %+v = %+v, %v", spec, again, err)
		}
	})
}

func FuzzDecodeMirrorVolume(f *testing.F) {
	addSeeds(f, seedVolume,
		`{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":7,"volume_uuid":"bae4c30d-3119-4870-807e-0e1a9fcbf185"}}`,
		`{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":7,"volume_uuid":"bae4c30d-3119-4870-807e-0e1a9fcbf185"},"source_agent":{"ip":"192.168.137.101","port":65536}}`,
		`{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":18446744073709551616,"volume_uuid":"bae4c30d-3119-4870-807e-0e1a9fcbf185"}}`,
		`{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":"7","volume_uuid":"bae4c30d-3119-4870-807e-0e1a9fcbf185"}}`,
		`{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":7,"volume_uuid":"bae4c30d-3119-4870-807e-0e1a9fcbf18\u00e9"}}`)
	key := core.VolumeKey(vol7)
	f.Fuzz(func(t *testing.T, data []byte) {
		mv, err := core.DecodeMirrorVolume(vol7, data)
		if err != nil {
			prefix := "mirror volume " + key + ": "
			if errors.Is(err, core.ErrContradiction) && strings.HasPrefix(err.Error(), key+": ") {
				prefix = key + ": " // the pair check
			}
			wantClearErr(t, err, prefix, mv, core.MirrorVolume{})
			return
		}
		if mv.SourceVolume.VolumeID != vol7.VolumeID || mv.SourceAgent.Port > 65535 || len(mv.SourceVolume.VolumeUUID) != 36 {
			t.Fatalf("decoded %+v for %s", mv, key)
		}
		again, err := core.DecodeMirrorVolume(vol7, encodeJSON(t, mv))
		if err != nil || again != mv {
			t.Fatalf("round trip of %+v = %+v, %v", mv, again, err)
		}
	})
}

func FuzzDecodeVolumeOperation(f *testing.F) {
	addSeeds(f, `{"operation":"start"}`, `{"operation": "stop_and_delete"}`, `{"operation":"destroy","force":true}`,
		`{"operation":"restart"}`, `{"operation":"START"}`, `{"operation":""}`, `{}`, `{"operation":"start\u0000"}`)
	f.Fuzz(func(t *testing.T, data []byte) {
		op, err := core.DecodeVolumeOperation(data)
		if err != nil {
			prefix := "operation: "
			if errors.Is(err, core.ErrUnknownOperation) {
				prefix = "unknown operation " // names the operation, quoted
			}
			wantClearErr(t, err, prefix, op, core.Operation(""))
			return
		}
		again, err := core.DecodeVolumeOperation(encodeJSON(t, core.OperationRecord{Operation: op}))
		if err != nil || again != op {
			t.Fatalf("round trip of %q = %q, %v", op, again, err)
		}
	})
}

func FuzzDecodeEnvironmentOperation(f *testing.F) {
	addSeeds(f, `{"operation":"start"}`, `{"operation":"stop","force":true}`, `{"operation":"stop","force":false}`,
		`{"operation":"start","force":true}`, `{"operation":"pause"}`, `{"operation":"stop","force":1}`, `{"operation":"stop","force":null}`)
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := core.DecodeEnvironmentOperation(data)
		if err != nil {
			prefix := "operation: "
			if errors.Is(err, core.ErrUnknownOperation) {
				prefix = "unknown operation "
			}
			wantClearErr(t, err, prefix, rec, core.OperationRecord{})
			return
		}
		if rec.Force && rec.Operation != core.OpStop {
			t.Fatalf("force kept with %q", rec.Operation)
		}
		again, err := core.DecodeEnvironmentOperation(encodeJSON(t, rec))
		if err != nil || again != rec {
			t.Fatalf("round trip of %+v = %+v, %v", rec, again, err)
		}
	})
}

func FuzzDecodeStatus(f *testing.F) {
	addSeeds(f, `{"state_code": "error", "error_reason": {"code": "cdm-dr.mirror.volume_worker_run.failure-create_storage-unknown", "contents": "could not create storage"}}`,
		`{"state_code":"mirroring","operation":"start","progress":100,"last_sync_time":"2024-05-01T10:00:00.123456789+09:00","lag":"1m0s","owner":"d1","updated_at":"2024-05-01T01:00:00Z"}`,
		`{"state_code":"mirroring","kept_recovery_point":{"name":"snap","taken_at":"2024-05-01T00:00:00Z"},"unintended_replicas":["b","a"]}`,
		`{"state_code": "", "error_reason": {"code": "", "contents": ""}}`, `{"state_code":3}`, `{"state_code":"paused","progress":-1}`)
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := core.DecodeStatus(data)
		if err != nil {
			wantClearErr(t, err, "status: ", st, core.Status{})
			return
		}
		if st.StateCode == core.StateNone {
			t.Fatalf("accepted a status without state_code: %q", data)
		}
		// Statuses read back are compared (Same) and rewritten (Encode),
		// so a decoded status must encode, and to itself.
		enc := encodeJSON(t, st)
		again, err := core.DecodeStatus(enc)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", enc, err)
		}
		if enc2 := encodeJSON(t, again); !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip changed %s to %s", enc, enc2)
		}
		if !st.Same(again) {
			t.Fatalf("status %s not the Same after a round trip", enc)
		}
	})
}

func FuzzDecodeSnapshotEvent(f *testing.F) {
	addSeeds(f, snapshotPayload("5", "7", "21", seedVolumeUUID, snapUUID),
		snapshotPayload("5", "7", "18446744073709551616", seedVolumeUUID, snapUUID),
		snapshotPayload("5", `"7"`, "21", seedVolumeUUID, snapUUID),
		snapshotPayload("5", "7", "21", "not-a-uuid", snapUUID),
		snapshotPayload("5", "7", "-21", seedVolumeUUID, snapUUID),
		`{"cluster_id":5,"volume_id":7,"snapshot_id":21}`)
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := core.DecodeSnapshotEvent(data)
		if err != nil {
			wantClearErr(t, err, "snapshot event: ", rec, core.SnapshotRecord{})
			return
		}
		if rec.Deleted {
			t.Fatalf("an event decoded as a deletion: %q", data)
		}
		again, err := core.DecodeSnapshotEvent(rec.Encode())
		if err != nil || again != rec {
			t.Fatalf("round trip of %+v = %+v, %v", rec, again, err)
		}
	})
}

func FuzzDecodeSnapshotRecord(f *testing.F) {
	addSeeds(f, snapshotPayload("5", "7", "21", seedVolumeUUID, snapUUID),
		strings.TrimSuffix(snapshotPayload("5", "7", "21", seedVolumeUUID, snapUUID), "}")+`, "deleted": true}`,
		strings.TrimSuffix(snapshotPayload("5", "7", "21", seedVolumeUUID, snapUUID), "}")+`, "deleted": "yes"}`,
		snapshotPayload("5", "7", "22", seedVolumeUUID, snapUUID))
	key := core.SnapshotKey(snap21)
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := core.DecodeSnapshotRecord(snap21, data)
		if err != nil {
			wantClearErr(t, err, key+": ", rec, core.SnapshotRecord{})
			return
		}
		if rec.SnapshotID != snap21.SnapshotID || rec.VolumeID != snap21.Volume.VolumeID {
			t.Fatalf("decoded %+v for %s", rec, key)
		}
		// deleted is what the record says, never a wrong type read as false.
		var fields map[string]json.RawMessage
		if json.Unmarshal(data, &fields) == nil {
			if d, ok := fields["deleted"]; ok && string(d) != "null" {
				var b bool
				if err := json.Unmarshal(d, &b); err != nil || b != rec.Deleted {
					t.Fatalf("deleted %s decoded as %v", d, rec.Deleted)
				}
			}
		}
		again, err := core.DecodeSnapshotRecord(snap21, rec.Encode())
		if err != nil || again != rec {
			t.Fatalf("round trip of %+v = %+v, %v", rec, again, err)
		}
	})
}
