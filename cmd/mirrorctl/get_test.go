package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// row finds the table line starting with name and splits it on runs of
// two or more spaces (the table's column gaps).
func row(t *testing.T, table, name string) []string {
	t.Helper()
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, name+" ") {
			return regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1)
		}
	}
	t.Fatalf("no row %s in:\n%s", name, table)
	return nil
}

func TestGetVolumesTable(t *testing.T) {
	f := newFixture(t)
	f.seed()
	r := f.run("get", "volumes")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "NAME") || !strings.Contains(r.stdout, "LAST SYNC") {
		t.Fatalf("no header:\n%s", r.stdout)
	}
	want := map[string][]string{
		"storage.11.13/volume.7": {"storage.11.13/volume.7", "start", "initializing", "42%", "-", "-", "-", "d1", "90s"},
		"storage.11.13/volume.8": {"storage.11.13/volume.8", "pause", "paused", "-", "5m ago", "3s", "-", "d1", "10m"},
	}
	for name, cols := range want {
		if got := row(t, r.stdout, name); strings.Join(got, "|") != strings.Join(cols, "|") {
			t.Errorf("row %s = %q, want %q", name, got, cols)
		}
	}
	// A name narrows the listing.
	r = f.run("get", "volumes", "storage.11.13/volume.8")
	if strings.Contains(r.stdout, "volume.7") || !strings.Contains(r.stdout, "volume.8") {
		t.Errorf("get volumes storage.11.13/volume.8 listed:\n%s", r.stdout)
	}
}

func TestGetEnvironmentsAndSnapshotsTable(t *testing.T) {
	f := newFixture(t)
	f.seed()
	r := f.run("get", "environments")
	if got, want := row(t, r.stdout, "storage.11.13"), []string{"storage.11.13", "5/11", "6/13", "start", "mirroring", "-", "2", "d1", "3h"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("environment row = %q, want %q", got, want)
	}
	r = f.run("list", "snapshots", "-o", "wide")
	if got, want := row(t, r.stdout, "storage.11.13/volume.7/snapshot.21"), []string{"storage.11.13/volume.7/snapshot.21", "daily-1", "false", "mirrored", "-", "60s", "-"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("snapshot row = %q, want %q", got, want)
	}
}

func TestGetJSONAndYAML(t *testing.T) {
	f := newFixture(t)
	f.seed()
	r := f.run("get", "volumes", "-o", "json")
	var vols []Volume
	if err := json.Unmarshal([]byte(r.stdout), &vols); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	if len(vols) != 2 {
		t.Fatalf("%d volumes, want 2: %s", len(vols), r.stdout)
	}
	v := vols[0]
	if v.Name != "storage.11.13/volume.7" || v.Key != "mirror_volume/storage.11.13/volume.7" || v.Operation != "start" ||
		v.Status == nil || v.Status.StateCode != "initializing" || v.Status.Progress == nil || *v.Status.Progress != 42 ||
		v.Leader != "d1" || v.Snapshots != 1 || v.VolumeUUID != "00000000-0000-4000-8000-000000000007" {
		t.Errorf("volume 7 = %+v", v)
	}
	// The status keeps the contract's field names.
	if !strings.Contains(r.stdout, `"state_code": "initializing"`) {
		t.Errorf("JSON lacks the contract's state_code:\n%s", r.stdout)
	}
	r = f.run("get", "environments", "-o", "yaml")
	for _, want := range []string{"name: storage.11.13", "state_code: mirroring", "leader: d1", "volumes: 2"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("YAML lacks %q:\n%s", want, r.stdout)
		}
	}
	// Nothing to list is an empty list, not null.
	r = f.run("get", "volumes", "storage.1.2", "-o", "json")
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("empty listing = %q, want []", r.stdout)
	}
}

// --watch shows the listing again when a status changes, with a progress
// bar for the first copy.
func TestGetWatch(t *testing.T) {
	f := newFixture(t)
	f.seed()
	ctx, cancel := context.WithCancel(t.Context())
	out := &syncBuffer{}
	done := make(chan result, 1)
	go func() { done <- f.runCtx(ctx, out, "get", "volumes", "--watch") }()
	eventually(t, "the first listing", func() bool { return strings.Contains(out.String(), "[########............] 42%") })
	f.put("mirror_volume/storage.11.13/volume.7/status", `{"state_code":"initializing","operation":"start","progress":60,"owner":"d1"}`)
	eventually(t, "the listing after the change", func() bool { return strings.Contains(out.String(), "[############........] 60%") })
	cancel()
	if r := <-done; r.code != 0 {
		t.Fatalf("watch ended with %d: %s", r.code, r.stderr)
	}
}

func TestGetUsage(t *testing.T) {
	f := newFixture(t)
	for _, args := range [][]string{{"get"}, {"get", "disks"}, {"get", "volumes", "-o", "xml"}, {"get", "volumes", "volume.7"}, {"frobnicate"}} {
		if r := f.run(args...); r.code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, r.code, exitUsage)
		}
	}
}

// -h prints the command's usage on stdout and exits 0.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"get", "volumes", "-h"}, {"volume", "--help"}, {"doctor", "-h"}, {"help"}} {
		r := runWith(t, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage: mirrorctl") {
			t.Errorf("%q: exit %d, stdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
		}
	}
}
