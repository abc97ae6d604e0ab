package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDoctorHealthySite(t *testing.T) {
	f := newFixture(t)
	f.seed()
	r := f.run("doctor")
	if r.code != 0 || !strings.Contains(r.stdout, "0 finding(s)") {
		t.Fatalf("a healthy site: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// Each seeded inconsistency is found, under its check and key.
func TestDoctorFindings(t *testing.T) {
	f := newFixture(t)
	f.seed()
	// A volume whose environment is gone.
	f.put("mirror_volume/storage.21.23/volume.5", `{}`)
	f.put("mirror_volume/storage.21.23/volume.5/status", `{"state_code":"mirroring"}`)
	// An operation and status without their volume record.
	f.put("mirror_volume/storage.11.13/volume.9/operation", `{"operation":"start"}`)
	f.put("mirror_volume/storage.11.13/volume.9/status", `{"state_code":"waiting"}`)
	// A status nobody leads (no leader key for volume 10).
	f.seedVolume(10, "start", `{"state_code":"mirroring","operation":"start","owner":"d2"}`, 0)
	// A storage without metadata.
	f.put("clusters/7/storages/17", sprintf(storageRecord, 7, 17))
	// A leader key without a lease (written by hand): volume 7's.
	f.put("mirror_leader/mirror_volume/storage.11.13/volume.7", "d1") // the live daemon's name, but no lease
	// An environment whose storage type no plugin serves.
	f.put("mirror_environment/storage.11.13/status", `{"state_code":"error","operation":"start","error_reason":{"code":"cdm-dr.mirror.environment.failure-get_backend-no_backend","contents":"no plugin serves openstack.storage.type.netapp (plugins: example)"},"owner":"d1"}`)

	r := f.run("doctor", "-o", "json")
	if r.code != exitFailed {
		t.Fatalf("exit %d, want %d: %s", r.code, exitFailed, r.stderr)
	}
	var got []Finding
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	want := map[string]string{
		checkOrphanVolume: "mirror_volume/storage.21.23/volume.5",
		checkNoRecord:     "mirror_volume/storage.11.13/volume.9",
		checkUnowned:      "mirror_volume/storage.11.13/volume.10",
		checkNoMetadata:   "clusters/7/storages/17",
		checkDeadLeader:   "mirror_leader/mirror_volume/storage.11.13/volume.7",
		checkNoBackend:    "mirror_environment/storage.11.13",
	}
	for check, key := range want {
		found := false
		for _, f := range got {
			found = found || (f.Check == check && f.Key == key)
		}
		if !found {
			t.Errorf("no %s finding for %s in %s", check, key, r.stdout)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d findings, want %d: %s", len(got), len(want), r.stdout)
	}
	// The text form explains and says what to do.
	r = f.run("doctor")
	if !strings.Contains(r.stdout, "fix: mirrorctl purge storage.21.23/volume.5") || !strings.Contains(r.stdout, "no plugin serves openstack.storage.type.netapp") {
		t.Errorf("text output:\n%s", r.stdout)
	}
}
