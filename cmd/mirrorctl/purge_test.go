package main

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// foreign are keys purge must never touch: the cluster manager's, and
// keys that merely start with "mirror".
var foreign = map[string]string{
	"mirrorfoo/x":           "not ours",
	"mirror_environmentx":   "not ours either",
	"other/mirror_volume/x": "nor this",
	"clusters/5/volume/7":   `{"cluster_id":5,"volume_id":7,"volume_uuid":"00000000-0000-4000-8000-000000000007"}`,
}

func mirrorKeys(all map[string]string) []string {
	var out []string
	for k := range all {
		if strings.HasPrefix(k, "mirror_environment/") || strings.HasPrefix(k, "mirror_volume/") || strings.HasPrefix(k, "mirror_leader/") {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// listed returns the keys a purge listed, in order.
func listed(out string) []string {
	var keys []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "  ") {
			keys = append(keys, strings.TrimSpace(line))
		}
	}
	return keys
}

func TestPurge(t *testing.T) {
	f := newFixture(t)
	f.seed()
	for k, v := range foreign {
		f.put(k, v)
	}
	before := f.all()
	rev := f.revision()

	// Daemons run (d1's lease is alive): a whole purge is refused.
	r := f.run("purge", "--yes")
	if r.code != exitRefused || !strings.Contains(r.stderr, "d1") {
		t.Fatalf("purge with d1 running: exit %d: %s", r.code, r.stderr)
	}
	// The dry run lists exactly the mirror keys and deletes nothing.
	r = f.run("purge", "--force")
	if r.code != 0 || !strings.Contains(r.stdout, "dry run: nothing deleted") {
		t.Fatalf("dry run: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if got, want := listed(r.stdout), mirrorKeys(before); !slices.Equal(got, want) {
		t.Errorf("dry run listed %q,\nwant %q", got, want)
	}
	if got := f.revision(); got != rev {
		t.Fatalf("the dry run wrote: revision %d -> %d", rev, got)
	}

	// One volume by name: its keys and leader key only (volume.70 is not
	// volume.7's).
	f.seedVolume(70, "start", "", 0)
	r = f.run("purge", "storage.11.13/volume.7", "--yes")
	if r.code != 0 {
		t.Fatalf("purge volume.7: exit %d: %s", r.code, r.stderr)
	}
	after := f.all()
	for k := range before {
		_, kept := after[k]
		gone := strings.HasPrefix(k, "mirror_volume/storage.11.13/volume.7/") || k == "mirror_volume/storage.11.13/volume.7" || k == "mirror_leader/mirror_volume/storage.11.13/volume.7"
		if kept == gone {
			t.Errorf("key %s kept=%v after purging volume.7", k, kept)
		}
	}
	if _, ok := after["mirror_volume/storage.11.13/volume.70"]; !ok {
		t.Error("purging volume.7 deleted volume.70")
	}

	// One environment by name: its keys, its volumes' and their leader
	// keys; storage.21.230 is not storage.21.23's.
	for _, env := range []string{"storage.21.23", "storage.21.230"} {
		f.put("mirror_environment/"+env, "{}")
		f.put("mirror_environment/"+env+"/status", `{"state_code":"error"}`)
		f.put("mirror_volume/"+env+"/volume.1", "{}")
		f.put("mirror_leader/mirror_volume/"+env+"/volume.1", "d1")
		f.put("mirror_leader/mirror_environment/"+env, "d1")
	}
	r = f.run("purge", "storage.21.23", "--yes")
	if r.code != 0 {
		t.Fatalf("purge storage.21.23: exit %d: %s", r.code, r.stderr)
	}
	want := []string{"mirror_environment/storage.21.23", "mirror_environment/storage.21.23/status", "mirror_leader/mirror_environment/storage.21.23",
		"mirror_leader/mirror_volume/storage.21.23/volume.1", "mirror_volume/storage.21.23/volume.1"}
	if got := listed(r.stdout); !slices.Equal(got, want) {
		t.Errorf("purge storage.21.23 deleted %q, want %q", got, want)
	}
	after = f.all()
	for _, k := range want {
		if _, ok := after[k]; ok {
			t.Errorf("%s not deleted", k)
		}
	}
	if len(mirrorKeys(after)) == 0 || after["mirror_environment/storage.21.230"] != "{}" {
		t.Error("purging storage.21.23 reached storage.21.230")
	}

	// Everything, forced: the mirror keys go, the foreign keys stay.
	r = f.run("purge", "--yes", "--force")
	if r.code != 0 {
		t.Fatalf("purge --yes --force: exit %d: %s", r.code, r.stderr)
	}
	after = f.all()
	if left := mirrorKeys(after); len(left) != 0 {
		t.Errorf("mirror keys left: %q", left)
	}
	for k, v := range foreign {
		if after[k] != v {
			t.Errorf("foreign key %s = %q after purge, want %q", k, after[k], v)
		}
	}
	for k := range maps.Keys(before) {
		if strings.HasPrefix(k, "clusters/") && after[k] != before[k] {
			t.Errorf("cluster manager's key %s touched", k)
		}
	}
	if r := f.run("purge"); r.code != 0 || !strings.Contains(r.stdout, "nothing to purge") {
		t.Errorf("purge of nothing: exit %d: %s", r.code, r.stdout)
	}
}
