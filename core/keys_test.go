package core_test

import (
	"strings"
	"testing"

	"github.com/cdmdr/mirror/core"
)

// rebuild writes a parsed key back with the key builders.
func rebuild(p core.ParsedKey) string {
	switch p.Kind {
	case core.KindStorage:
		return core.StorageKey(p.Storage)
	case core.KindStorageMetadata:
		return core.StorageMetadataKey(p.Storage)
	case core.KindClusterVolume:
		return core.ClusterVolumeKey(p.Cluster, p.VolumeID)
	case core.KindEnvironment:
		return core.EnvironmentKey(p.Env)
	case core.KindEnvironmentOperation:
		return core.EnvironmentOperationKey(p.Env)
	case core.KindEnvironmentStatus:
		return core.EnvironmentStatusKey(p.Env)
	case core.KindVolume:
		return core.VolumeKey(p.Volume)
	case core.KindVolumeOperation:
		return core.VolumeOperationKey(p.Volume)
	case core.KindVolumeStatus:
		return core.VolumeStatusKey(p.Volume)
	case core.KindSnapshot:
		return core.SnapshotKey(p.Snapshot)
	case core.KindSnapshotStatus:
		return core.SnapshotStatusKey(p.Snapshot)
	}
	return "<unknown kind " + p.Kind.String() + ">"
}

var (
	env1113  = core.EnvironmentID{Source: 11, Target: 13}
	vol7     = core.VolumeRef{Env: env1113, VolumeID: 7}
	snap21   = core.SnapshotRef{Volume: vol7, SnapshotID: 21}
	stor613  = core.StorageRef{ClusterID: 6, StorageID: 13}
	stor511  = core.StorageRef{ClusterID: 5, StorageID: 11}
	maxU64ID = uint64(18446744073709551615)
)

// TestParseKeySeedExamples parses the seed's own keys and checks the
// parsed ids, the kind and the round trip through the builders.
func TestParseKeySeedExamples(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		key   string
		want  core.ParsedKey
		built string // the same key from the builder
	}{
		"environment": {"mirror_environment/storage.11.13",
			core.ParsedKey{Kind: core.KindEnvironment, Env: env1113}, core.EnvironmentKey(env1113)},
		"environment operation": {"mirror_environment/storage.11.13/operation",
			core.ParsedKey{Kind: core.KindEnvironmentOperation, Env: env1113}, core.EnvironmentOperationKey(env1113)},
		"environment status": {"mirror_environment/storage.11.13/status",
			core.ParsedKey{Kind: core.KindEnvironmentStatus, Env: env1113}, core.EnvironmentStatusKey(env1113)},
		"storage 6/13": {"clusters/6/storages/13",
			core.ParsedKey{Kind: core.KindStorage, Storage: stor613}, core.StorageKey(stor613)},
		"storage 5/11": {"clusters/5/storages/11",
			core.ParsedKey{Kind: core.KindStorage, Storage: stor511}, core.StorageKey(stor511)},
		"storage metadata": {"clusters/5/storages/11/metadata",
			core.ParsedKey{Kind: core.KindStorageMetadata, Storage: stor511}, core.StorageMetadataKey(stor511)},
		"cluster volume": {"clusters/5/volume/7",
			core.ParsedKey{Kind: core.KindClusterVolume, Cluster: 5, VolumeID: 7}, core.ClusterVolumeKey(5, 7)},
		"mirror volume": {"mirror_volume/storage.11.13/volume.7",
			core.ParsedKey{Kind: core.KindVolume, Env: env1113, Volume: vol7}, core.VolumeKey(vol7)},
		"volume operation": {"mirror_volume/storage.11.13/volume.7/operation",
			core.ParsedKey{Kind: core.KindVolumeOperation, Env: env1113, Volume: vol7}, core.VolumeOperationKey(vol7)},
		"volume status": {"mirror_volume/storage.11.13/volume.7/status",
			core.ParsedKey{Kind: core.KindVolumeStatus, Env: env1113, Volume: vol7}, core.VolumeStatusKey(vol7)},
		"snapshot": {"mirror_volume/storage.11.13/volume.7/snapshot.21",
			core.ParsedKey{Kind: core.KindSnapshot, Env: env1113, Volume: vol7, Snapshot: snap21}, core.SnapshotKey(snap21)},
		"snapshot status": {"mirror_volume/storage.11.13/volume.7/snapshot.21/status",
			core.ParsedKey{Kind: core.KindSnapshotStatus, Env: env1113, Volume: vol7, Snapshot: snap21}, core.SnapshotStatusKey(snap21)},
		"zero ids": {"mirror_volume/storage.0.0/volume.0/snapshot.0/status",
			core.ParsedKey{Kind: core.KindSnapshotStatus, Volume: core.VolumeRef{}, Snapshot: core.SnapshotRef{}},
			core.SnapshotStatusKey(core.SnapshotRef{})},
		"max uint64": {"clusters/18446744073709551615/volume/18446744073709551615",
			core.ParsedKey{Kind: core.KindClusterVolume, Cluster: maxU64ID, VolumeID: maxU64ID},
			core.ClusterVolumeKey(maxU64ID, maxU64ID)},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if c.built != c.key {
				t.Errorf("builder gives %q, want %q", c.built, c.key)
			}
			p, err := core.ParseKey(c.key)
			if err != nil {
				t.Fatalf("ParseKey(%q): %v", c.key, err)
			}
			if p != c.want {
				t.Errorf("ParseKey(%q) = %+v, want %+v", c.key, p, c.want)
			}
			if got := rebuild(p); got != c.key {
				t.Errorf("rebuilt %q as %q", c.key, got)
			}
		})
	}
}

func TestStorageFileName(t *testing.T) {
	t.Parallel()
	if got := core.StorageFileName(stor613); got != "clusters.6.storages.13" {
		t.Errorf("StorageFileName = %q, want clusters.6.storages.13", got)
	}
	if got := core.StorageFileName(stor511); got != "clusters.5.storages.11" {
		t.Errorf("StorageFileName = %q, want clusters.5.storages.11", got)
	}
	if got := core.StorageFileName(stor613) + ".conf"; got != "clusters.6.storages.13.conf" {
		t.Errorf("conf file = %q", got)
	}
}

func TestEnvironmentID(t *testing.T) {
	t.Parallel()
	if got := env1113.String(); got != "storage.11.13" {
		t.Errorf("String = %q", got)
	}
	id, err := core.ParseEnvironmentID("storage.11.13")
	if err != nil || id != env1113 {
		t.Errorf("ParseEnvironmentID = %+v, %v", id, err)
	}
	for _, bad := range []string{"", "storage.", "storage.11", "storage.11.", "storage..13", "storage.11.13.1",
		"storage.011.13", "storage.11.+13", "storages.11.13", "Storage.11.13", "storage.11.13 ", "storage.-1.13"} {
		if id, err := core.ParseEnvironmentID(bad); err == nil {
			t.Errorf("ParseEnvironmentID(%q) = %+v, want an error", bad, id)
		}
	}
}

func TestParseKeyRejects(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"leading zero cluster":       "clusters/06/storages/13",
		"leading zero storage":       "clusters/6/storages/013",
		"leading zero volume":        "mirror_volume/storage.11.13/volume.07",
		"leading zero env source":    "mirror_environment/storage.011.13",
		"leading zero env target":    "mirror_volume/storage.11.013/volume.7",
		"leading zero snapshot":      "mirror_volume/storage.11.13/volume.7/snapshot.021",
		"plus sign":                  "clusters/+6/storages/13",
		"minus sign":                 "clusters/5/volume/-7",
		"sign in env":                "mirror_environment/storage.+11.13",
		"sign in volume":             "mirror_volume/storage.11.13/volume.+7",
		"space":                      "clusters/ 6/storages/13",
		"hex":                        "clusters/0x6/storages/13",
		"overflow":                   "clusters/18446744073709551616/storages/13",
		"missing storage id":         "clusters/6/storages",
		"missing storage id slash":   "clusters/6/storages/",
		"missing cluster":            "clusters//storages/13",
		"only prefix":                "clusters/",
		"extra part after storage":   "clusters/6/storages/13/metadata/x",
		"other storage child":        "clusters/6/storages/13/status",
		"trailing slash storage":     "clusters/6/storages/13/",
		"volumes plural":             "clusters/5/volumes/7",
		"storage singular":           "clusters/6/storage/13",
		"cluster volume child":       "clusters/5/volume/7/metadata",
		"volume.7x":                  "mirror_volume/storage.11.13/volume.7x",
		"volume. empty":              "mirror_volume/storage.11.13/volume.",
		"volume without dot":         "mirror_volume/storage.11.13/volume7",
		"volumes. plural":            "mirror_volume/storage.11.13/volumes.7",
		"volume missing":             "mirror_volume/storage.11.13",
		"volume missing slash":       "mirror_volume/storage.11.13/",
		"env-level volume status":    "mirror_volume/storage.11.13/status",
		"volume trailing slash":      "mirror_volume/storage.11.13/volume.7/",
		"volume unknown child":       "mirror_volume/storage.11.13/volume.7/metadata",
		"volume operation child":     "mirror_volume/storage.11.13/volume.7/operation/x",
		"snapshot.21x":               "mirror_volume/storage.11.13/volume.7/snapshot.21x",
		"snapshot empty":             "mirror_volume/storage.11.13/volume.7/snapshot.",
		"snapshot unknown child":     "mirror_volume/storage.11.13/volume.7/snapshot.21/operation",
		"snapshot extra part":        "mirror_volume/storage.11.13/volume.7/snapshot.21/status/x",
		"snapshot trailing slash":    "mirror_volume/storage.11.13/volume.7/snapshot.21/",
		"env missing target":         "mirror_environment/storage.11",
		"env three ids":              "mirror_environment/storage.11.13.15",
		"env bad word":               "mirror_environment/storages.11.13",
		"env empty":                  "mirror_environment/",
		"env unknown child":          "mirror_environment/storage.11.13/volume.7",
		"env trailing slash":         "mirror_environment/storage.11.13/",
		"env extra part":             "mirror_environment/storage.11.13/status/x",
		"env operation upper":        "mirror_environment/storage.11.13/Operation",
		"unknown prefix":             "mirror/storage.11.13",
		"leader prefix":              "mirror_leader/mirror_volume/storage.11.13/volume.7",
		"recovery job":               "dr.recovery.job/1",
		"no trailing slash clusters": "clusters",
		"empty":                      "",
		"leading slash":              "/clusters/6/storages/13",
		"upper case prefix":          "Clusters/6/storages/13",
	}
	for name, key := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if p, err := core.ParseKey(key); err == nil {
				t.Errorf("ParseKey(%q) = %+v, want an error", key, p)
			} else if !strings.Contains(err.Error(), key) && key != "" {
				t.Errorf("error %q does not name the key", err)
			}
		})
	}
}

func TestPrefixesDoNotOverlap(t *testing.T) {
	t.Parallel()
	vol70 := core.VolumeRef{Env: env1113, VolumeID: 70}
	prefix := core.VolumeChildrenPrefix(vol7)
	if prefix != "mirror_volume/storage.11.13/volume.7/" {
		t.Errorf("VolumeChildrenPrefix = %q", prefix)
	}
	for _, k := range []string{core.VolumeKey(vol70), core.VolumeOperationKey(vol70), core.VolumeStatusKey(vol70),
		core.SnapshotKey(core.SnapshotRef{Volume: vol70, SnapshotID: 21}), core.SnapshotStatusKey(core.SnapshotRef{Volume: vol70, SnapshotID: 1})} {
		if strings.HasPrefix(k, prefix) {
			t.Errorf("volume 7's prefix %q covers volume 70's key %q", prefix, k)
		}
	}
	for _, k := range []string{core.VolumeOperationKey(vol7), core.VolumeStatusKey(vol7), core.SnapshotKey(snap21), core.SnapshotStatusKey(snap21)} {
		if !strings.HasPrefix(k, prefix) {
			t.Errorf("volume 7's prefix %q misses its key %q", prefix, k)
		}
	}
	envPrefix := core.EnvironmentVolumesPrefix(env1113)
	if envPrefix != "mirror_volume/storage.11.13/" {
		t.Errorf("EnvironmentVolumesPrefix = %q", envPrefix)
	}
	if !strings.HasPrefix(core.VolumeKey(vol7), envPrefix) {
		t.Errorf("environment prefix misses its volume")
	}
	for _, other := range []core.EnvironmentID{{Source: 11, Target: 130}, {Source: 1, Target: 113}, {Source: 11, Target: 1}} {
		if k := core.VolumeKey(core.VolumeRef{Env: other, VolumeID: 7}); strings.HasPrefix(k, envPrefix) {
			t.Errorf("environment prefix %q covers %q", envPrefix, k)
		}
	}
	// The environment's own keys are not volume keys and vice versa.
	if strings.HasPrefix(core.EnvironmentStatusKey(env1113), core.VolumePrefix) {
		t.Errorf("environment status under the volume prefix")
	}
	// Leader keys start with "mirror", so `etcdctl del --prefix mirror`
	// clears them (docs/contract.md §6), and are not parsed as mirror keys.
	lk := core.LeaderKey(core.DefaultLeaderPrefix, core.VolumeKey(vol7))
	if lk != "mirror_leader/mirror_volume/storage.11.13/volume.7" || !strings.HasPrefix(lk, "mirror") {
		t.Errorf("LeaderKey = %q", lk)
	}
	if _, err := core.ParseKey(lk); err == nil {
		t.Errorf("ParseKey accepts the leader key %q", lk)
	}
}

func TestKeyKindString(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for k := core.KindUnknown; k <= core.KindSnapshotStatus; k++ {
		s := k.String()
		if s == "" || seen[s] {
			t.Errorf("KeyKind(%d).String() = %q, empty or duplicate", k, s)
		}
		seen[s] = true
	}
	if got := core.KeyKind(99).String(); got != "KeyKind(99)" {
		t.Errorf("KeyKind(99) = %q", got)
	}
}

// FuzzParseKey: whatever ParseKey accepts is written back byte for byte by
// the builders, and parses again to the same value.
func FuzzParseKey(f *testing.F) {
	for _, k := range []string{
		"mirror_environment/storage.11.13", "mirror_environment/storage.11.13/operation",
		"mirror_environment/storage.11.13/status", "clusters/6/storages/13", "clusters/5/storages/11/metadata",
		"clusters/5/volume/7", "mirror_volume/storage.11.13/volume.7", "mirror_volume/storage.11.13/volume.7/operation",
		"mirror_volume/storage.11.13/volume.7/status", "mirror_volume/storage.11.13/volume.7/snapshot.21",
		"mirror_volume/storage.11.13/volume.7/snapshot.21/status", "clusters/06/storages/13",
		"mirror_volume/storage.11.13/volume.7x", "clusters/5/volumes/7", "mirror_volume/storage.1.2/volume.3/snapshot.4/status/x",
	} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		p, err := core.ParseKey(key)
		if err != nil {
			if p != (core.ParsedKey{}) {
				t.Errorf("ParseKey(%q) failed but returned %+v", key, p)
			}
			return
		}
		if p.Kind == core.KindUnknown {
			t.Fatalf("ParseKey(%q) accepted with kind unknown", key)
		}
		if got := rebuild(p); got != key {
			t.Fatalf("ParseKey(%q) = %+v, rebuilt as %q", key, p, got)
		}
		q, err := core.ParseKey(rebuild(p))
		if err != nil || q != p {
			t.Fatalf("re-parse of %q = %+v, %v; want %+v", key, q, err, p)
		}
	})
}

// FuzzParseResource parses leader keys' resource part (a leader key is
// the leader prefix and a resource key; its value is an opaque daemon
// identity, not decoded).
func FuzzParseResource(f *testing.F) {
	for _, k := range []string{"mirror_environment/storage.11.13", "mirror_volume/storage.11.13/volume.7",
		"mirror_volume/storage.11.13/volume.7/status", "mirror_volume/storage.11.13/volume. 7",
		"mirror_volume/storage.11.13/volume.18446744073709551616", "mirror_volume/storage.11.13/../volume.7",
		"mirror_environment/storage.11.13\x00", "mirror_volume/storage.11.13/volume.7/", "clusters/6/storages/13"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		r, err := core.ParseResource(key)
		if err != nil {
			if r != (core.Resource{}) || !strings.Contains(err.Error(), core.Quote(key)) {
				t.Fatalf("ParseResource(%q) = %+v, %v", key, r, err)
			}
			return
		}
		if r.Key() != key {
			t.Fatalf("ParseResource(%q) = %+v, whose key is %q", key, r, r.Key())
		}
		if r.Kind == core.ResourceVolume && r.Volume.Env != r.Env || r.Kind != core.ResourceVolume && r.Kind != core.ResourceEnvironment {
			t.Fatalf("ParseResource(%q) = %+v", key, r)
		}
	})
}
