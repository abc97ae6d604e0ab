package core_test

import (
	"testing"

	"github.com/cdmdr/mirror/core"
)

// TestResourceOfKeys: every key of an environment or volume names its
// resource, whose keys build back the same strings; other keys name none.
func TestResourceOfKeys(t *testing.T) {
	t.Parallel()
	env := core.EnvironmentID{Source: 11, Target: 13}
	vol := core.VolumeRef{Env: env, VolumeID: 7}
	snap := core.SnapshotRef{Volume: vol, SnapshotID: 3}
	cases := map[string]core.Resource{
		core.EnvironmentKey(env):          core.EnvironmentResource(env),
		core.EnvironmentOperationKey(env): core.EnvironmentResource(env),
		core.EnvironmentStatusKey(env):    core.EnvironmentResource(env),
		core.VolumeKey(vol):               core.VolumeResource(vol),
		core.VolumeOperationKey(vol):      core.VolumeResource(vol),
		core.VolumeStatusKey(vol):         core.VolumeResource(vol),
		core.SnapshotKey(snap):            core.VolumeResource(vol),
		core.SnapshotStatusKey(snap):      core.VolumeResource(vol),
	}
	for key, want := range cases {
		p, err := core.ParseKey(key)
		if err != nil {
			t.Fatalf("ParseKey(%q): %v", key, err)
		}
		got, ok := p.Resource()
		if !ok || got != want {
			t.Errorf("resource of %q = %v, %v; want %v", key, got, ok, want)
		}
	}
	for _, r := range []core.Resource{core.EnvironmentResource(env), core.VolumeResource(vol)} {
		back, err := core.ParseResource(r.Key())
		if err != nil || back != r {
			t.Errorf("ParseResource(%q) = %v, %v; want %v", r.Key(), back, err, r)
		}
		if r.StatusKey() != r.Key()+"/status" || r.OperationKey() != r.Key()+"/operation" {
			t.Errorf("%v: status key %q, operation key %q", r, r.StatusKey(), r.OperationKey())
		}
	}
	if _, err := core.ParseResource(core.VolumeStatusKey(vol)); err == nil {
		t.Error("ParseResource accepted a status key")
	}
	p, _ := core.ParseKey(core.StorageKey(core.StorageRef{ClusterID: 1, StorageID: 13}))
	if r, ok := p.Resource(); ok {
		t.Errorf("a storage key belongs to resource %v", r)
	}
}
