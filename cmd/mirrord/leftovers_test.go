package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/adapters/etcd/etcdtest"
)

// mirrord leftovers, end to end: records in a real (embedded) etcd, the
// plugin a real process loaded from a plugin directory with its settings
// from the configuration, and the listing as an operator or a script
// reads it.

const leftoverType = "openstack.storage.type.leftovertest"

// A second volume of the seed's environment, whose image is left.
const leftUUID = "5d0c6a43-2f7e-4c3b-9a8d-1e2f3a4b5c6d"

// leftoversSite is etcd with the storages 11 and 13 of leftoverType,
// storage 21 of a type no plugin serves, and a plugin directory holding
// the test plugin.
type leftoversSite struct {
	t         *testing.T
	endpoints []string
	cli       *clientv3.Client
	pluginDir string
}

func newLeftoversSite(t *testing.T) *leftoversSite {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "leftoverplugin"), "./testdata/leftoverplugin")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the test plugin: %v\n%s", err, out)
	}
	// Whatever the umask: the host refuses a plugin others may write.
	if err := os.Chmod(filepath.Join(dir, "leftoverplugin"), 0o755); err != nil {
		t.Fatal(err)
	}
	srv := etcdtest.Start(t)
	s := &leftoversSite{t: t, endpoints: srv.Endpoints(), cli: srv.Client(t), pluginDir: dir}
	for _, st := range []struct{ key, typ string }{
		{"clusters/5/storages/11", leftoverType}, {"clusters/6/storages/13", leftoverType},
		{"clusters/5/storages/21", "openstack.storage.type.netapp"},
	} {
		parts := strings.Split(st.key, "/")
		s.put(st.key, `{"cluster_id":`+parts[1]+`,"storage_id":`+parts[3]+`,"type":"`+st.typ+`","backend_name":"x"}`)
		s.put(st.key+"/metadata", `{"pool":"volumes","keyring":"`+seedKeyring+`"}`)
	}
	s.put("mirror_environment/storage.11.13", `{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13}}`)
	s.put("mirror_environment/storage.11.13/operation", `{"operation":"start"}`)
	s.put("mirror_volume/storage.11.13/volume.7", `{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":7,"volume_uuid":"`+seedUUID+`"}}`)
	s.put("mirror_volume/storage.11.13/volume.7/status", `{"state_code":"mirroring"}`)
	return s
}

func (s *leftoversSite) put(key, value string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.cli.Put(ctx, key, value); err != nil {
		s.t.Fatalf("put %s: %v", key, err)
	}
}

// deleteMirrorKeys is the original's `etcdctl del --prefix mirror`.
func (s *leftoversSite) deleteMirrorKeys() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.cli.Delete(ctx, "mirror", clientv3.WithPrefix()); err != nil {
		s.t.Fatal(err)
	}
}

// run runs mirrord leftovers with the plugin's flags given through
// MIRRORD_PLUGINS, as an operator configures the daemon's plugins.
func (s *leftoversSite) run(pluginArgs []string, args ...string) (code int, stdout, stderr string) {
	s.t.Helper()
	settings, _ := json.Marshal(map[string]map[string][]string{"leftoverplugin": {"args": append([]string{"-types", leftoverType}, pluginArgs...)}})
	environ := map[string]string{
		"MIRRORD_ETCD_ENDPOINTS": strings.Join(s.endpoints, ","),
		"MIRRORD_PLUGIN_DIR":     s.pluginDir,
		"MIRRORD_PLUGINS":        string(settings),
	}
	var out, errOut bytes.Buffer
	code = command(context.Background(), append([]string{"leftovers"}, args...), env(environ), &out, &errOut)
	if strings.Contains(out.String()+errOut.String(), seedKeyring) {
		s.t.Fatal("a keyring reached the output")
	}
	return code, out.String(), errOut.String()
}

func decodeLeftovers(t *testing.T, out string) leftoversJSON {
	t.Helper()
	var got leftoversJSON
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("JSON listing: %v\n%s", err, out)
	}
	return got
}

func leftoverNames(l leftoversJSON) []string {
	var out []string
	for _, x := range l.Leftovers {
		out = append(out, x.Storage+" "+x.Kind+" "+x.Name)
	}
	slices.Sort(out)
	return out
}

func TestLeftovers(t *testing.T) {
	s := newLeftoversSite(t)
	images := `-images={"clusters/5/storages/11":["` + seedUUID + `","` + leftUUID + `"],"clusters/6/storages/13":["` + seedUUID + `"]}`

	// Recorded: environment 11.13 and volume 7 account for the pairing and
	// the seed's images; the other image of storage 11 is left.
	code, out, errOut := s.run([]string{images}, "-o", "json")
	if code != 1 {
		t.Fatalf("exit code %d, want 1 (leftovers found); stderr:\n%s", code, errOut)
	}
	got := decodeLeftovers(t, out)
	if names := leftoverNames(got); !slices.Equal(names, []string{
		"clusters/5/storages/11 volume image volumes/volume-" + leftUUID + " on storage clusters/5/storages/11",
	}) {
		t.Fatalf("leftovers = %q", names)
	}
	if l := got.Leftovers[0]; l.Description == "" || !strings.Contains(l.Remedy, "rbd mirror image disable") {
		t.Fatalf("leftover %+v: want a description and a remedy", l)
	}
	if len(got.Skipped) != 1 || got.Skipped[0].Storage != "clusters/5/storages/21" || !strings.Contains(got.Skipped[0].Reason, "netapp") {
		t.Fatalf("skipped = %+v, want storage 21 of a type no plugin serves", got.Skipped)
	}
	if !strings.Contains(errOut, "storage clusters/5/storages/21 not asked") {
		t.Fatalf("stderr does not name the storage not asked:\n%s", errOut)
	}

	// The keys deleted by hand: everything the plugin made is left.
	s.deleteMirrorKeys()
	code, out, errOut = s.run([]string{images})
	if code != 1 {
		t.Fatalf("exit code %d, want 1; stderr:\n%s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || strings.Join(strings.Fields(lines[0]), " ") != "STORAGE KIND NAME DESCRIPTION REMEDY" {
		t.Fatalf("table:\n%s\nwant a header and 5 rows", out)
	}
	for _, want := range []string{
		"clusters/5/storages/11  pairing  peer of pool volumes on storage clusters/5/storages/11",
		"clusters/5/storages/11  volume   image volumes/volume-" + seedUUID,
		"clusters/5/storages/11  volume   image volumes/volume-" + leftUUID,
		"clusters/6/storages/13  pairing  peer of pool volumes on storage clusters/6/storages/13",
		"clusters/6/storages/13  volume   image volumes/volume-" + seedUUID,
	} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, want) }) {
			t.Errorf("no row starting %q in:\n%s", want, out)
		}
	}

	// A storage its plugin cannot answer for is reported; the others are
	// still listed; the exit code says the listing is incomplete.
	code, out, errOut = s.run([]string{images, "-unreachable=clusters/6/storages/13"}, "-o", "json")
	if code != 2 {
		t.Fatalf("exit code %d, want 2 (a storage not answered); stderr:\n%s", code, errOut)
	}
	got = decodeLeftovers(t, out)
	if len(got.Unanswered) != 1 || got.Unanswered[0].Storage != "clusters/6/storages/13" || !strings.Contains(got.Unanswered[0].Error, "unreachable") {
		t.Fatalf("unanswered = %+v, want storage 13, saying why", got.Unanswered)
	}
	if n := len(got.Leftovers); n != 3 {
		t.Fatalf("leftovers of storage 11 = %q, want 3", leftoverNames(got))
	}
	if !strings.Contains(errOut, "clusters/6/storages/13 could not be answered") || !strings.Contains(errOut, "incomplete") {
		t.Fatalf("stderr does not say which storage was not answered:\n%s", errOut)
	}

	// Nothing left.
	code, out, errOut = s.run(nil)
	if code != 0 || strings.TrimSpace(out) != "nothing found on clusters/5/storages/11, clusters/6/storages/13" {
		t.Fatalf("exit code %d, output %q, want 0 and nothing found; stderr:\n%s", code, out, errOut)
	}

	// A plugin that cannot be loaded: the others still answer, and the
	// listing is incomplete.
	if err := os.WriteFile(filepath.Join(s.pluginDir, "broken"), []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = s.run(nil)
	if code != 2 || !strings.Contains(errOut, "plugin not loaded") || !strings.Contains(errOut, "broken") || !strings.Contains(out, "nothing found on") {
		t.Fatalf("with a broken plugin: exit code %d, output %q, stderr:\n%s", code, out, errOut)
	}

	// No plugin serves any storage (a wrong plugin directory).
	s.pluginDir = t.TempDir()
	code, _, errOut = s.run(nil)
	if code != 2 || !strings.Contains(errOut, "no storage was asked") {
		t.Fatalf("with no plugin: exit code %d, stderr:\n%s", code, errOut)
	}
}

// TestLeftoversErrors: what stops the listing is exit code 2 with words.
func TestLeftoversErrors(t *testing.T) {
	cases := map[string]struct {
		args    []string
		environ map[string]string
		want    string
	}{
		"etcd unreachable": {[]string{"--etcd-endpoints", "127.0.0.1:1", "--etcd-dial-timeout", "300ms"}, nil, "read the storages"},
		"bad output":       {[]string{"-o", "yaml"}, nil, `-o "yaml"`},
		"bad config":       {[]string{"--log-level", "loud"}, nil, "log level"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := command(context.Background(), append([]string{"leftovers"}, c.args...), env(c.environ), &out, &errOut)
			if code != 2 || !strings.Contains(errOut.String(), c.want) {
				t.Fatalf("exit code %d, stderr %q; want 2 and %q", code, errOut.String(), c.want)
			}
		})
	}
}
