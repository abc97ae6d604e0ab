package app_test

import (
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/cdmdr/mirror/app/harness"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// storagePair writes storages 5/s and 6/t of type typ.
func storagePair(h *harness.Harness, s, t uint64, typ string) {
	for _, ref := range []core.StorageRef{{ClusterID: 5, StorageID: s}, {ClusterID: 6, StorageID: t}} {
		h.Put(core.StorageKey(ref), map[string]any{"cluster_id": ref.ClusterID, "storage_id": ref.StorageID, "type": typ, "backend_name": "x"})
		h.Put(core.StorageMetadataKey(ref), metadata())
	}
}

// envFor writes environment storage.{s}.{t} pairing storages 5/s and 6/t,
// with operation start.
func envFor(h *harness.Harness, s, t uint64) core.EnvironmentID {
	id := core.EnvironmentID{Source: s, Target: t}
	h.Put(core.EnvironmentKey(id), map[string]any{
		"source_cluster_storage": core.StorageRef{ClusterID: 5, StorageID: s},
		"target_cluster_storage": core.StorageRef{ClusterID: 6, StorageID: t}})
	h.Put(core.EnvironmentOperationKey(id), map[string]string{"operation": "start"})
	return id
}

// volumeIn writes mirror volume 9 of environment id, started.
func volumeIn(h *harness.Harness, id core.EnvironmentID) core.VolumeRef {
	ref := core.VolumeRef{Env: id, VolumeID: 9}
	rec := volumeRecord(9, uuid9)
	rec["source_cluster_storage"] = core.StorageRef{ClusterID: 5, StorageID: id.Source}
	rec["target_cluster_storage"] = core.StorageRef{ClusterID: 6, StorageID: id.Target}
	h.Shared.Backend.AddSourceVolume(uuid9)
	h.Put(core.VolumeKey(ref), rec)
	setOp(h, ref, "start")
	return ref
}

const (
	// hugeValue is the size of the huge values: above 1 MiB, below the
	// 1.5 MiB etcd takes in one request by default.
	hugeValue = 1<<20 + 1024
	// maxReason bounds an error_reason's contents: a bad value is
	// quoted in part, never whole.
	maxReason = 1024
)

// clip shortens s for a failure message.
func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

type badStatus struct {
	key  string // a status key
	code string // the exact error_reason code
	says string // what the reason must mention
}

func TestBadInput(t *testing.T) {
	vs9 := core.VolumeStatusKey(vol9)
	cases := []struct {
		name  string
		setup func(h *harness.Harness) []badStatus
	}{
		{"malformed volume record", func(h *harness.Harness) []badStatus {
			h.Put(core.VolumeKey(vol9), `{"source_cluster_storage": {"cluster_id": 5,`)
			setOp(h, vol9, "start")
			return []badStatus{{vs9, "cdm-dr.mirror.volume.failure-decode_volume-malformed", core.VolumeKey(vol9)}}
		}},
		{"unknown operation", func(h *harness.Harness) []badStatus {
			seedVolume(h, vol9, uuid9, "restart")
			return []badStatus{{vs9, "cdm-dr.mirror.volume.failure-decode_operation-unknown_operation", `"restart"`}}
		}},
		{"malformed operation", func(h *harness.Harness) []badStatus {
			h.Shared.Backend.AddSourceVolume(uuid9)
			h.Put(core.VolumeKey(vol9), volumeRecord(9, uuid9))
			h.Put(core.VolumeOperationKey(vol9), `{"operation": start}`)
			return []badStatus{{vs9, "cdm-dr.mirror.volume.failure-decode_operation-malformed", core.VolumeOperationKey(vol9)}}
		}},
		{"environment of the volume missing", func(h *harness.Harness) []badStatus {
			ref := volumeIn(h, core.EnvironmentID{Source: 12, Target: 14})
			return []badStatus{{core.VolumeStatusKey(ref), "cdm-dr.mirror.volume.failure-get_environment-not_found", "mirror_environment/storage.12.14"}}
		}},
		{"storage record of the volume missing", func(h *harness.Harness) []badStatus {
			rec := volumeRecord(9, uuid9)
			rec["target_cluster_storage"] = core.StorageRef{ClusterID: 7, StorageID: 13} // no such storage
			h.Shared.Backend.AddSourceVolume(uuid9)
			h.Put(core.VolumeKey(vol9), rec)
			setOp(h, vol9, "start")
			return []badStatus{{vs9, "cdm-dr.mirror.volume.failure-get_storage-not_found", "clusters/7/storages/13"}}
		}},
		{"storage records of an environment missing", func(h *harness.Harness) []badStatus {
			id := envFor(h, 15, 16)
			ref := volumeIn(h, id)
			return []badStatus{
				{core.EnvironmentStatusKey(id), "cdm-dr.mirror.environment.failure-get_storage-not_found", "clusters/5/storages/15"},
				{core.VolumeStatusKey(ref), "cdm-dr.mirror.volume.failure-get_storage-not_found", "clusters/5/storages/15"},
			}
		}},
		{"storage type no plugin serves", func(h *harness.Harness) []badStatus {
			storagePair(h, 21, 23, "openstack.storage.type.netapp")
			id := envFor(h, 21, 23)
			ref := volumeIn(h, id)
			return []badStatus{
				{core.EnvironmentStatusKey(id), "cdm-dr.mirror.environment.failure-get_backend-no_backend", "openstack.storage.type.netapp"},
				{core.VolumeStatusKey(ref), "cdm-dr.mirror.volume.failure-get_backend-no_backend", "openstack.storage.type.netapp"},
			}
		}},
		{"storages of different types", func(h *harness.Harness) []badStatus {
			h.Put(core.StorageKey(core.StorageRef{ClusterID: 5, StorageID: 25}), map[string]any{"cluster_id": 5, "storage_id": 25, "type": harness.CephType})
			h.Put(core.StorageKey(core.StorageRef{ClusterID: 6, StorageID: 27}), map[string]any{"cluster_id": 6, "storage_id": 27, "type": "openstack.storage.type.netapp"})
			id := envFor(h, 25, 27)
			return []badStatus{{core.EnvironmentStatusKey(id), "cdm-dr.mirror.environment.failure-create_storage-contradiction", "one type"}}
		}},
		{"volume record contradicting its key", func(h *harness.Harness) []badStatus {
			h.Shared.Backend.AddSourceVolume(uuid9)
			h.Put(core.VolumeKey(vol9), volumeRecord(7, uuid9)) // says volume 7
			setOp(h, vol9, "start")
			return []badStatus{{vs9, "cdm-dr.mirror.volume.failure-decode_volume-contradiction", "volume_id is 7"}}
		}},
		{"storage record contradicting its key", func(h *harness.Harness) []badStatus {
			h.Put(core.StorageKey(core.StorageRef{ClusterID: 5, StorageID: 35}), map[string]any{"cluster_id": 5, "storage_id": 36, "type": harness.CephType})
			h.Put(core.StorageKey(core.StorageRef{ClusterID: 6, StorageID: 37}), map[string]any{"cluster_id": 6, "storage_id": 37, "type": harness.CephType})
			id := envFor(h, 35, 37)
			return []badStatus{{core.EnvironmentStatusKey(id), "cdm-dr.mirror.environment.failure-get_storage-contradiction", "storage 36"}}
		}},
		{"environment record contradicting its key", func(h *harness.Harness) []badStatus {
			id := core.EnvironmentID{Source: 11, Target: 14}
			h.Put(core.EnvironmentKey(id), envRecord) // pairs 11 with 13
			h.Put(core.EnvironmentOperationKey(id), map[string]string{"operation": "start"})
			return []badStatus{{core.EnvironmentStatusKey(id), "cdm-dr.mirror.environment.failure-decode_environment-contradiction", "13"}}
		}},
		{"malformed environment record", func(h *harness.Harness) []badStatus {
			id := core.EnvironmentID{Source: 31, Target: 33}
			h.Put(core.EnvironmentKey(id), `{"source_cluster_storage": `)
			h.Put(core.EnvironmentOperationKey(id), map[string]string{"operation": "start"})
			ref := volumeIn(h, id)
			return []badStatus{
				{core.EnvironmentStatusKey(id), "cdm-dr.mirror.environment.failure-decode_environment-malformed", core.EnvironmentKey(id)},
				{core.VolumeStatusKey(ref), "cdm-dr.mirror.volume.failure-get_environment-malformed", core.EnvironmentKey(id)},
			}
		}},
		{"unknown environment operation", func(h *harness.Harness) []badStatus {
			storagePair(h, 41, 43, harness.CephType)
			id := envFor(h, 41, 43)
			h.Put(core.EnvironmentOperationKey(id), map[string]string{"operation": "pause"})
			return []badStatus{{core.EnvironmentStatusKey(id), "cdm-dr.mirror.environment.failure-decode_operation-unknown_operation", `"pause"`}}
		}},
		{"malformed storage metadata holding a keyring", func(h *harness.Harness) []badStatus {
			storagePair(h, 45, 47, harness.CephType)
			h.Put(core.StorageMetadataKey(core.StorageRef{ClusterID: 6, StorageID: 47}), `{"pool": "volumes", "keyring": "`+secretKeyring+`"`)
			id := envFor(h, 45, 47)
			return []badStatus{{core.EnvironmentStatusKey(id), "cdm-dr.mirror.environment.failure-get_storage-malformed", "clusters/6/storages/47/metadata"}}
		}},
		// Wrong types, overflowing numbers and huge values: each one's
		// own entry ends in error, its reason short and naming the field.
		{"wrong type in the volume record", func(h *harness.Harness) []badStatus {
			rec := volumeRecord(9, uuid9)
			rec["source_volume"] = map[string]any{"cluster_id": 5, "volume_id": "9", "volume_uuid": uuid9}
			h.Shared.Backend.AddSourceVolume(uuid9)
			h.Put(core.VolumeKey(vol9), rec)
			setOp(h, vol9, "start")
			return []badStatus{{vs9, "cdm-dr.mirror.volume.failure-decode_volume-malformed", "source_volume.volume_id"}}
		}},
		{"volume id above uint64 in the volume record", func(h *harness.Harness) []badStatus {
			h.Shared.Backend.AddSourceVolume(uuid9)
			h.Put(core.VolumeKey(vol9), `{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},`+
				`"source_volume":{"cluster_id":5,"volume_id":18446744073709551625,"volume_uuid":"`+uuid9+`"}}`)
			setOp(h, vol9, "start")
			return []badStatus{{vs9, "cdm-dr.mirror.volume.failure-decode_volume-malformed", "18446744073709551625"}}
		}},
		{"agent port above 65535", func(h *harness.Harness) []badStatus {
			rec := volumeRecord(9, uuid9)
			rec["source_agent"] = map[string]any{"ip": "192.168.137.101", "port": 65536}
			h.Shared.Backend.AddSourceVolume(uuid9)
			h.Put(core.VolumeKey(vol9), rec)
			setOp(h, vol9, "start")
			return []badStatus{{vs9, "cdm-dr.mirror.volume.failure-decode_volume-malformed", "source_agent.port 65536"}}
		}},
		{"operation of the wrong type", func(h *harness.Harness) []badStatus {
			h.Shared.Backend.AddSourceVolume(uuid9)
			h.Put(core.VolumeKey(vol9), volumeRecord(9, uuid9))
			h.Put(core.VolumeOperationKey(vol9), `{"operation": ["start"]}`)
			return []badStatus{{vs9, "cdm-dr.mirror.volume.failure-decode_operation-malformed", "operation"}}
		}},
		{"huge volume record", func(h *harness.Harness) []badStatus {
			rec := volumeRecord(9, strings.Repeat("a", hugeValue))
			h.Put(core.VolumeKey(vol9), rec)
			setOp(h, vol9, "start")
			return []badStatus{{vs9, "cdm-dr.mirror.volume.failure-decode_volume-malformed", "volume_uuid"}}
		}},
		{"huge unknown operation", func(h *harness.Harness) []badStatus {
			seedVolume(h, vol9, uuid9, strings.Repeat("x", hugeValue))
			return []badStatus{{vs9, "cdm-dr.mirror.volume.failure-decode_operation-unknown_operation", "xxxx"}}
		}},
		{"storage id above uint64 in an environment record", func(h *harness.Harness) []badStatus {
			id := core.EnvironmentID{Source: 51, Target: 53}
			h.Put(core.EnvironmentKey(id), `{"source_cluster_storage":{"cluster_id":5,"storage_id":51},"target_cluster_storage":{"cluster_id":6,"storage_id":18446744073709551669}}`)
			h.Put(core.EnvironmentOperationKey(id), map[string]string{"operation": "start"})
			return []badStatus{{core.EnvironmentStatusKey(id), "cdm-dr.mirror.environment.failure-decode_environment-malformed", "18446744073709551669"}}
		}},
		{"wrong type in a storage record", func(h *harness.Harness) []badStatus {
			storagePair(h, 55, 57, harness.CephType)
			h.Put(core.StorageKey(core.StorageRef{ClusterID: 5, StorageID: 55}), `{"cluster_id":5,"storage_id":55,"type":7}`)
			id := envFor(h, 55, 57)
			return []badStatus{{core.EnvironmentStatusKey(id), "cdm-dr.mirror.environment.failure-get_storage-malformed", "clusters/5/storages/55"}}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, _ := mirroringEnv(t)
				bringUp(h, vol8, uuid8)
				bad := c.setup(h)
				for _, b := range bad {
					// Wait for the code: records written together may reach
					// the daemon's cache one watched prefix at a time.
					var st core.Status
					h.WaitFor(b.key+" in error with "+b.code, func() bool {
						st, _ = h.Status(b.key)
						return st.StateCode == core.StateError && st.ErrorReason != nil && st.ErrorReason.Code == b.code
					})
					if !strings.Contains(st.ErrorReason.Contents, b.says) {
						t.Fatalf("%s: reason %q does not mention %q", b.key, clip(st.ErrorReason.Contents), b.says)
					}
					if n := len(st.ErrorReason.Contents); n > maxReason {
						t.Fatalf("%s: reason of %d bytes, want at most %d: %q", b.key, n, maxReason, clip(st.ErrorReason.Contents))
					}
					if ev := waitEvent(h, b.code); ev.Key == "" || ev.Message != st.ErrorReason.Contents {
						t.Fatalf("event = %+v, want the reason of %s", ev, b.key)
					}
				}
				// Time passes; nothing else is disturbed and the bad entries
				// stay in error without stirring the backend.
				calls := len(h.Shared.Backend.CallLog())
				for range 3 {
					h.Tick(poll)
					h.WaitIdle()
				}
				for _, b := range bad {
					wantStatus(t, h, b.key, core.StateError, b.code)
				}
				for _, call := range h.Shared.Backend.CallLog()[calls:] {
					// The bulk poll asks about one volume: 8, the only one settled.
					if !strings.HasPrefix(call, "VolumeStatus "+uuid8) && call != "VolumeStatuses "+envID.String()+" 1" &&
						!strings.HasPrefix(call, "EnvironmentStatus "+envID.String()) {
						t.Fatalf("backend called for bad input: %s", call)
					}
				}
				st := wantStatus(t, h, core.VolumeStatusKey(vol8), core.StateMirroring, "")
				if st.Owner != "d1" {
					t.Fatalf("volume 8 = %+v", st)
				}
				wantNoError(t, h, core.VolumeStatusKey(vol8))
				wantNoError(t, h, envStatus)
				wantStatus(t, h, envStatus, core.StateMirroring, "")
				for _, call := range h.Shared.Backend.CallLog() {
					if strings.HasSuffix(call, " "+uuid8) && !strings.HasPrefix(call, "VolumeStatus ") && call != "StartVolume "+uuid8 {
						t.Fatalf("volume 8 touched: %s", call)
					}
				}
				if n := callsFor(h, "StartVolume", uuid8); n != 1 {
					t.Fatalf("StartVolume of volume 8 called %d times", n)
				}
				wantReplication(t, h, uuid8, "replaying", true)
				endBadEntries(t, h, bad)
				wantStatus(t, h, core.VolumeStatusKey(vol8), core.StateMirroring, "")
				wantStatus(t, h, envStatus, core.StateMirroring, "")
				wantNoSecret(t, h)
			})
		})
	}
}

// endBadEntries ends every entry in error by its operation: a volume by
// destroy, an environment by a forced stop once its volumes are gone.
// Each one's keys go, with an event saying so.
func endBadEntries(t *testing.T, h *harness.Harness, bad []badStatus) {
	t.Helper()
	for _, volumes := range []bool{true, false} {
		for _, b := range bad {
			if strings.HasPrefix(b.key, core.VolumePrefix) != volumes {
				continue
			}
			key := strings.TrimSuffix(b.key, "/status")
			if volumes {
				h.Put(key+"/operation", map[string]string{"operation": "destroy"})
			} else {
				// A plain stop ends only what a plugin can tear down; else
				// its reason points at the forced stop.
				h.Put(key+"/operation", map[string]string{"operation": "stop"})
				var st core.Status
				h.WaitFor(key+" stopped or pointing at the forced stop", func() bool {
					st, _ = h.Status(b.key)
					return !hasKeyUnder(h, key) || st.ErrorReason != nil && strings.Contains(st.ErrorReason.Contents, "forced stop")
				})
				if strings.HasSuffix(b.code, "no_backend") && !hasKeyUnder(h, key) {
					t.Fatalf("%s: a plain stop ended an environment no plugin serves", key)
				}
				if hasKeyUnder(h, key) {
					h.Put(key+"/operation", map[string]any{"operation": "stop", "force": true})
				}
			}
			h.WaitFor(key+" ended", func() bool { return !hasKeyUnder(h, key) })
			h.WaitFor(key+"'s end reported", func() bool { return endEvent(h, key).Key != "" })
			if e := endEvent(h, key); strings.HasSuffix(b.code, "no_backend") && !strings.Contains(e.Message, "not called") {
				t.Fatalf("%s ended without a plugin, but its event does not say so: %+v", key, e)
			}
		}
	}
}

// hasKeyUnder says whether key or a key below it exists.
func hasKeyUnder(h *harness.Harness, key string) bool {
	for k := range h.Shared.KV.Dump() {
		if k == key || strings.HasPrefix(k, key+"/") {
			return true
		}
	}
	return false
}

// endEvent is the event reporting that the resource at key ended.
func endEvent(h *harness.Harness, key string) ports.Event {
	for _, e := range h.Shared.Events.Events() {
		if e.Key == key && (strings.Contains(e.Code, ".finished-") || strings.Contains(e.Code, "-leftovers-found")) {
			return e
		}
	}
	return ports.Event{}
}

// wantNoSecret checks that the keyring text appears nowhere but in the
// storage metadata it was written to: no status, no other key, no event.
func wantNoSecret(t *testing.T, h *harness.Harness) {
	t.Helper()
	for k, v := range h.Shared.KV.Dump() {
		if strings.HasSuffix(k, "/metadata") && strings.HasPrefix(k, core.ClustersPrefix) {
			continue
		}
		if strings.Contains(v, secretKeyring) {
			t.Fatalf("the keyring appears in %s: %s", k, v)
		}
	}
	for _, e := range h.Shared.Events.Events() {
		if strings.Contains(e.Message, secretKeyring) || strings.Contains(e.Code, secretKeyring) || strings.Contains(e.Key, secretKeyring) {
			t.Fatalf("the keyring appears in event %+v", e)
		}
	}
}

// TestBadInputKeys writes keys the DR manager might get wrong: odd
// characters, "..", a NUL, an id above uint64, a leading zero, an unknown
// child. None parses, so none can have a status: each is reported by an
// event keyed by the key itself, nothing is written under it, the backend
// is not called, and volume 8 beside them keeps mirroring. An operation
// written under such a key is no key form either: it is reported the same
// way and does nothing; deleting the key is the remedy, and it is quiet.
func TestBadInputKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol8, uuid8)
		vk := core.VolumeKey(vol9)
		odd := map[string]any{
			core.EnvironmentVolumesPrefix(envID) + "volume. 9": volumeRecord(9, uuid9),
			vk + " /operation": map[string]string{"operation": "start"},
			core.EnvironmentVolumesPrefix(envID) + "volume.\uff19": volumeRecord(9, uuid9), // a fullwidth 9
			core.EnvironmentVolumesPrefix(envID) + "../volume.9":   volumeRecord(9, uuid9),
			vk + "\x00": volumeRecord(9, uuid9),
			core.EnvironmentVolumesPrefix(envID) + "volume.18446744073709551616": volumeRecord(9, uuid9),
			core.EnvironmentVolumesPrefix(envID) + "volume.09/operation":         map[string]string{"operation": "start"},
			vk + "/operation/x":                                               map[string]string{"operation": "start"},
			core.EnvironmentPrefix + "storage.11.13.15":                       envRecord,
			core.EnvironmentPrefix + "storage.11." + strings.Repeat("3", 300): envRecord,
			core.EnvironmentPrefix + "storage.11.13/operation\u202e":          map[string]string{"operation": "stop"},
		}
		h.Shared.Backend.AddSourceVolume(uuid9)
		calls := len(h.Shared.Backend.CallLog())
		for k, v := range odd {
			h.Put(k, v)
		}
		for k := range odd {
			var ev ports.Event
			h.WaitFor("an event for "+clip(k), func() bool {
				for _, e := range eventsWith(h, core.BadKeyCode()) {
					if e.Key == k {
						ev = e
						return true
					}
				}
				return false
			})
			if ev.Level != ports.LevelWarn || !strings.Contains(ev.Message, "ignored") || len(ev.Message) > maxReason {
				t.Fatalf("event for %q = %+v", k, ev)
			}
		}
		// An operation under an odd key does nothing but report itself.
		stop := core.EnvironmentVolumesPrefix(envID) + "volume. 9/operation"
		h.Put(stop, map[string]string{"operation": "destroy"})
		h.WaitFor("an event for "+stop, func() bool {
			return slices.ContainsFunc(eventsWith(h, core.BadKeyCode()), func(e ports.Event) bool { return e.Key == stop })
		})
		for range 3 {
			h.Tick(poll)
			h.WaitIdle()
		}
		for k := range h.Shared.KV.Dump() {
			for o := range odd {
				if strings.HasPrefix(k, o) && k != o && k != stop {
					t.Fatalf("%q written under the odd key %q", k, o)
				}
			}
		}
		for _, call := range h.Shared.Backend.CallLog()[calls:] {
			if strings.Contains(call, uuid9) {
				t.Fatalf("backend called for an odd key: %s", call)
			}
		}
		if _, ok := h.Status(core.VolumeStatusKey(vol9)); ok {
			t.Fatalf("volume 9 got a status from an odd key")
		}
		wantStatus(t, h, core.VolumeStatusKey(vol8), core.StateMirroring, "")
		wantNoError(t, h, core.VolumeStatusKey(vol8))
		wantStatus(t, h, envStatus, core.StateMirroring, "")
		wantNoError(t, h, envStatus)

		// Deleting them is quiet and leaves volume 8 alone.
		reported := len(eventsWith(h, core.BadKeyCode()))
		for k := range odd {
			if err := h.Shared.KV.Delete(t.Context(), k); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.Shared.KV.Delete(t.Context(), stop); err != nil {
			t.Fatal(err)
		}
		h.Tick(poll)
		h.WaitIdle()
		if n := len(eventsWith(h, core.BadKeyCode())); n != reported {
			t.Fatalf("%d more events after deleting the odd keys", n-reported)
		}
		wantStatus(t, h, core.VolumeStatusKey(vol8), core.StateMirroring, "")
		t.Logf("%d odd keys, %d events, 0 statuses, 0 backend calls for them; volume 8 mirroring", len(odd)+1, reported)
	})
}
