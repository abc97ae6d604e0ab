package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// A kept recovery point and replicas nobody asked for, as a backend
// reports them, reach the statuses in etcd (once) and the event subject
// on NATS through a real daemon.
func TestKeptPointAndUnintendedReplicasThroughEtcdAndNATS(t *testing.T) {
	c := newCluster(t)
	c.backend.AutoSync(true)
	events := c.subscribeEvents(t)
	c.start("d1")
	c.seedStorages()
	c.seedEnvironment("start")
	const envStatus = "mirror_environment/storage.11.13/status"
	const volStatus = "mirror_volume/storage.11.13/volume.7/status"
	c.waitState(envStatus, core.StateMirroring)
	c.seedVolume(7, seedUUID, "start")
	c.waitState(volStatus, core.StateMirroring)

	// One after the other, so the events come in a known order.
	envRev := c.revision()
	const replica = "image volumes/volume-00000000-0000-4000-8000-000000000009 on storage clusters.7.storages.14, copied from clusters.5.storages.11"
	c.backend.SetUnintended(seedEnv.String(), replica)
	c.waitFor("the replica in the environment's status", 20*time.Second, func() bool {
		return strings.Contains(c.get(envStatus), `"unintended_replicas":["`+replica+`"]`)
	})
	events.want(t, core.UnintendedCode(), "mirror_environment/storage.11.13", replica)

	volRev := c.revision()
	const name = "image volumes/volume-" + seedUUID + ".kept on storage clusters.6.storages.13"
	c.backend.SetKept(seedUUID, ports.KeptPoint{Name: name, Taken: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)})
	wantKept := `"kept_recovery_point":{"name":"` + name + `","taken_at":"2026-11-30T09:00:00Z"}`
	c.waitFor("the kept point in the volume's status", 20*time.Second, func() bool { return strings.Contains(c.get(volStatus), wantKept) })
	events.want(t, core.KeptPointCode(), "mirror_volume/storage.11.13/volume.7", name)

	for key, st := range map[string]string{volStatus: c.get(volStatus), envStatus: c.get(envStatus)} {
		if !strings.Contains(st, `"state_code":"mirroring"`) || strings.Contains(st, "error_reason") {
			t.Fatalf("%s = %s, want mirroring without a reason", key, st)
		}
	}

	// Three more looks at each find the same: neither status is written again.
	vols, envs := c.backend.Calls("VolumeStatuses"), c.backend.Calls("EnvironmentStatus")
	c.waitFor("three more looks", 20*time.Second, func() bool {
		return c.backend.Calls("VolumeStatuses") >= vols+3 && c.backend.Calls("EnvironmentStatus") >= envs+3
	})
	if h := c.history(volStatus, volRev); len(h) != 1 {
		t.Fatalf("volume status written %d times since the kept point appeared, want once:\n%s", len(h), strings.Join(h, "\n"))
	}
	if h := c.history(envStatus, envRev); len(h) != 1 {
		t.Fatalf("environment status written %d times since the replica appeared, want once:\n%s", len(h), strings.Join(h, "\n"))
	}
}
