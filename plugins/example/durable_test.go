package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/memstorage"
)

// Two backends on one state directory are one storage, as two plugin
// processes (two daemons, or one killed and started again) see it; the
// call log holds each change with the volume before and after it.
func TestDurableStateIsShared(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	opts := []memstorage.Option{memstorage.Types(StorageType), memstorage.AutoSource()}
	a, err := newDurable(dir, true, opts...)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newDurable(dir, true, opts...)
	if err != nil {
		t.Fatal(err)
	}
	env := sdk.Environment{ID: "storage.11.13",
		Source: sdk.Storage{ClusterID: 5, StorageID: 11, Type: StorageType, Metadata: []byte(`{"keyring":"AQsecret=="}`)},
		Target: sdk.Storage{ClusterID: 6, StorageID: 13, Type: StorageType}}
	vol := sdk.Volume{Environment: env, ClusterID: 5, VolumeID: 7, VolumeUUID: "00000000-0000-4000-8000-000000000007"}

	if err := a.PrepareEnvironment(ctx, env); err != nil {
		t.Fatal(err)
	}
	if err := a.StartVolume(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if rep, err := b.VolumeStatus(ctx, vol); err != nil || rep.State != sdk.ReplicationReplaying {
		t.Fatalf("the other process sees %+v, %v; want replaying", rep, err)
	}
	if err := b.PauseVolume(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteTarget(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if rep, err := b.VolumeStatus(ctx, vol); err != nil || rep.State != sdk.ReplicationAbsent || rep.TargetExists {
		t.Fatalf("after the delete: %+v, %v; want nothing", rep, err)
	}

	state, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(state), "AQsecret") {
		t.Fatalf("the state keeps the storage's metadata: %s", state)
	}
	f, err := os.Open(filepath.Join(dir, "calls.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l callLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		s := l.Call
		if l.Before != nil {
			s += " " + string(l.Before.State) + "→" + string(l.After.State)
		}
		got = append(got, s)
	}
	want := []string{"PrepareEnvironment", "StartVolume absent→replaying", "PauseVolume replaying→paused", "DeleteTarget paused→absent"}
	if len(got) != len(want) {
		t.Fatalf("call log %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("call log %q, want %q", got, want)
		}
	}
}
