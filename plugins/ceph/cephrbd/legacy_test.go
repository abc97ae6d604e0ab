package cephrbd

import (
	"os"
	"path/filepath"
	"testing"
)

// What the last release kept in the state directory (a prepared marker,
// a paused set) is moved into the target pool at the first look, and
// the files removed: another host then sees both.
func TestLegacyStateMovedIntoPool(t *testing.T) {
	r := newRig(t, modeJournal)
	ctx := t.Context()
	envID := "storage.98.99" // no other test's environment
	image := "volume-legacy-test"
	t.Cleanup(func() {
		_ = removePoolMeta(r.dstIO, preparedKey(envID))
		_ = removePoolMeta(r.dstIO, pausedKey(envID, image))
	})
	state := r.be.stateDir
	files := map[string]string{
		filepath.Join(state, envID+".prepared"):       `{"source":"clusters.5.storages.11","target":"clusters.6.storages.13","target_site":"x"}`,
		filepath.Join(state, "paused", envID+".json"): `{"volumes/` + image + `":["volumes/7f3e-gid"]}`,
	}
	for p, content := range files {
		if err := ensureDir(filepath.Dir(p)); err != nil {
			t.Fatal(err)
		}
		if err := writePrivate(p, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := r.be.prepared(ctx, r.dstIO, envID); err != nil || !ok {
		t.Fatalf("prepared with a last-release marker file = %v, %v; want true", ok, err)
	}
	for p := range files {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there after the move (%v)", p, err)
		}
	}
	other := New(sdkLoggerTo(r.logs), t.TempDir()) // another host
	if ok, err := other.prepared(ctx, r.dstIO, envID); err != nil || !ok {
		t.Fatalf("prepared on another host = %v, %v; want true", ok, err)
	}
	paused, err := pausedImages(ctx, r.dstIO, envID)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := paused["volumes/"+image]; !ok || len(p.Aliases) != 1 || p.Aliases[0] != "volumes/7f3e-gid" {
		t.Fatalf("paused images in the pool = %+v; want the last release's one with its alias", paused)
	}
}
