package cephrbd

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// TestFindLeftovers sets up an environment with the plugin (prepared, one
// volume replicating, one paused, a recovery point added) and asks
// FindLeftovers about both storages: (a) with a query holding all of it,
// it reports only what was recorded; (b) with an empty query (the
// daemon's records reset), it reports every piece, the plugin executable
// over gRPC alike, and running each remedy's commands with the rbd, rados
// and ceph CLI leaves nothing to report, as the CLI agrees; (c) a
// recorded leftover is listed as recorded, whatever the query.
func TestFindLeftovers(t *testing.T) {
	r := newRig(t, modeJournal)
	bin := buildPluginAsync(t)
	ctx := t.Context()
	h1, h2 := r.newHarness(t), r.newHarness(t)
	env := h1.env
	r.prepareEnvironments(t, env)
	for _, h := range []*labHarness{h1, h2} {
		r.destroyAtEnd(t, h.vol)
		if err := r.be.StartVolume(ctx, h.vol); err != nil {
			t.Fatalf("StartVolume: %v", err)
		}
	}
	begin := time.Now()
	for _, h := range []*labHarness{h1, h2} {
		waitFor(t, "replaying", 60*time.Second, func() bool {
			st, err := r.be.VolumeStatus(ctx, h.vol)
			return err == nil && st.State == sdk.ReplicationReplaying && st.TargetExists
		})
	}
	t.Logf("two volumes replaying in %v", time.Since(begin).Round(100*time.Millisecond))
	if err := r.be.PauseVolume(ctx, h2.vol); err != nil {
		t.Fatalf("PauseVolume: %v", err)
	}
	if err := r.be.AddSnapshot(ctx, h1.snap); err != nil {
		t.Fatalf("AddSnapshot: %v", err)
	}
	recorded := sdk.Leftover{Kind: "copy", Name: "image volumes/volume-lost on storage " + storageKey(h1.env.Target),
		Description: "kept: its source was unreachable", Remedy: "Check first: nothing, it is a test's. Then run `true`."}
	if err := recordLeftover(ctx, r.dstIO, "lost.env", "volume-lost", recorded); err != nil {
		t.Fatal(err)
	}
	src, dst := env.Source, env.Target
	names := func(h *labHarness) string { return "volumes/" + imageName(h.vol) }

	// (a) Everything held: only the record.
	full := func(s sdk.Storage) sdk.LeftoverQuery {
		return sdk.LeftoverQuery{Storage: s, Environments: []sdk.Environment{env}, Volumes: []sdk.Volume{h1.vol, h2.vol}}
	}
	// What a failed earlier run left in the lab may show too: only what
	// names this test's environment, volumes or files counts.
	ours := func(list []sdk.Leftover) []sdk.Leftover {
		var out []sdk.Leftover
		for _, l := range list {
			text := l.Name + " " + l.Description
			for _, s := range []string{env.ID, imageName(h1.vol), imageName(h2.vol), r.be.stateDir, recorded.Name} {
				if strings.Contains(text, s) {
					out = append(out, l)
					break
				}
			}
		}
		return out
	}
	if got := ours(find(t, r.be, full(src))); len(got) != 0 {
		t.Errorf("FindLeftovers(source, everything held) = %s, want nothing", show(got))
	}
	got := ours(find(t, r.be, full(dst)))
	if len(got) != 1 || got[0].Kind != recorded.Kind || got[0].Name != recorded.Name || got[0].Description != recorded.Description ||
		!strings.HasPrefix(got[0].Remedy, strings.TrimSuffix(recorded.Remedy, ".")) {
		t.Errorf("FindLeftovers(target, everything held) = %s, want the recorded leftover only", show(got))
	}

	// (b) The reset. The plugin restarts (its supervisors go; rbd-mirror
	// runs on) and is asked with nothing held.
	quitSupervisors(r.be)
	srcFound, dstFound := find(t, r.be, sdk.LeftoverQuery{Storage: src}), find(t, r.be, sdk.LeftoverQuery{Storage: dst})
	t.Logf("source: %s", show(srcFound))
	t.Logf("target: %s", show(dstFound))
	remote := startPlugin(t, bin, r.be.stateDir)
	if viaGRPC := find(t, remote, sdk.LeftoverQuery{Storage: dst}); !reflect.DeepEqual(viaGRPC, dstFound) {
		t.Errorf("the plugin executable found %s, the backend in-process %s", show(viaGRPC), show(dstFound))
	}
	pid := readPid(t, r.be.pidPath(env.ID))
	runDir := r.be.runDir(env.ID)
	want := []struct {
		found       []sdk.Leftover
		kind, names string
	}{
		{srcFound, "volume", "image " + names(h1) + " on storage " + storageKey(src)},
		{srcFound, "volume", "image " + names(h2) + " on storage " + storageKey(src)},
		{srcFound, "snapshot", names(h1) + "@snapshot-" + h1.snap.SnapshotUUID},
		{srcFound, "pairing", "mirror peer "}, // tx
		{srcFound, "pairing", "mirror mode of pool volumes on storage " + storageKey(src)},
		{srcFound, "process", fmt.Sprintf("rbd-mirror process %d ", pid)},
		{srcFound, "file", "run directory " + runDir},
		{srcFound, "file", "conf and keyrings of storage " + storageKey(src)},
		{dstFound, "copy", "image " + names(h1) + " on storage " + storageKey(dst)},
		{dstFound, "copy", "image " + names(h2) + " on storage " + storageKey(dst)},
		{dstFound, "pairing", "mirror peer "}, // rx
		{dstFound, "pairing", "mirror mode of pool volumes on storage " + storageKey(dst)},
		{dstFound, "record", "mirror.prepared." + env.ID + " "},
		{dstFound, "record", "mirror.paused." + env.ID + "." + imageName(h2.vol) + " "},
		{dstFound, "record", "mirror.rbd-mirror." + env.ID + "."},
		{dstFound, "copy", recorded.Name},
		{dstFound, "process", fmt.Sprintf("rbd-mirror process %d ", pid)},
		{dstFound, "file", "run directory " + runDir},
		{dstFound, "file", "conf and keyrings of storage " + storageKey(dst)},
	}
	for _, w := range want {
		if !slices.ContainsFunc(w.found, func(l sdk.Leftover) bool { return l.Kind == w.kind && strings.Contains(l.Name, w.names) }) {
			t.Errorf("no %s leftover named %q", w.kind, w.names)
		}
	}
	for _, l := range append(srcFound, dstFound...) {
		if l.Description == "" || !strings.Contains(l.Remedy, "Then run `") {
			t.Errorf("leftover %+v: want a description and a remedy with a command", l)
		}
	}
	if !strings.Contains(show(dstFound), "image-meta remove "+names(h2)+" conf_rbd_mirroring_replay_delay") {
		t.Errorf("the paused copy's remedy does not lift its hold")
	}
	r.checkLeftoversHoldNoSecret(t, append(srcFound, dstFound...))
	if t.Failed() {
		t.FailNow()
	}

	// Every remedy, in the order listed, on the cluster its name says
	// (those of an earlier run's leftovers too: all must go).
	begin = time.Now()
	sites := map[string]labSite{storageKey(src): r.lab.Sites[0], storageKey(dst): r.lab.Sites[1]}
	done := map[string]bool{}
	for _, l := range byKind(append(srcFound, dstFound...)) {
		if done[l.Name] {
			continue // a host's process or run directory, listed for both storages
		}
		done[l.Name] = true
		site := siteOf(l.Name, sites)
		checks, cmds := remedySteps(l.Remedy)
		for _, c := range checks {
			if out, err := runCLI(site, c); err != nil {
				t.Errorf("%s: check `%s`: %v\n%s", l.Name, c, err, out)
			}
		}
		for _, c := range cmds {
			if out, err := runCLI(site, c); err != nil {
				t.Fatalf("%s: remedy `%s`: %v\n%s", l.Name, c, err, out)
			}
		}
		if l.Kind == "process" {
			waitFor(t, "rbd-mirror gone", 20*time.Second, func() bool { return !pidAlive(pid, r.be.asokPath(env.ID)) })
		}
	}
	t.Logf("remedies run in %v", time.Since(begin).Round(100*time.Millisecond))
	for _, s := range []sdk.Storage{src, dst} {
		if got := find(t, r.be, sdk.LeftoverQuery{Storage: s}); len(got) != 0 {
			t.Errorf("FindLeftovers(%s, nothing held) after the remedies = %s, want nothing", storageKey(s), show(got))
		}
	}
	// The CLI agrees: no mirroring left, the volumes and copies kept.
	for i, site := range r.lab.Sites {
		if out, err := runCLI(site, "rbd mirror pool info volumes"); err != nil || !strings.Contains(out, "Mode: disabled") {
			t.Errorf("site %d: rbd mirror pool info: %v\n%s", i, err, out)
		}
		for _, h := range []*labHarness{h1, h2} {
			if out, err := runCLI(site, "rbd mirror image status "+names(h)); err == nil || !strings.Contains(out, "not enabled") {
				t.Errorf("site %d: rbd mirror image status %s = %v\n%s; want mirroring not enabled", i, names(h), err, out)
			}
			if out, err := runCLI(site, "rbd info "+names(h)); err != nil {
				t.Errorf("site %d: %s is gone: %v\n%s", i, names(h), err, out)
			}
		}
	}
	if _, err := os.Stat(runDir); err == nil {
		t.Errorf("%s is still there", runDir)
	}
	r.checkNoSecrets(t)
}

// quitSupervisors ends the backend's rbd-mirror supervisors, as a plugin
// process that exits does (rbd-mirror runs on), but keeps its
// connections: Close would shut them down under a supervisor's last
// call, which librados does not survive.
func quitSupervisors(b *Backend) {
	b.mu.Lock()
	ds := maps.Clone(b.daemons)
	clear(b.daemons)
	b.mu.Unlock()
	for _, d := range ds {
		d.quitSupervising()
	}
}

// find calls FindLeftovers, bounded.
func find(t *testing.T, b sdk.Backend, q sdk.LeftoverQuery) []sdk.Leftover {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	begin := time.Now()
	got, err := b.FindLeftovers(ctx, q)
	if err != nil {
		t.Fatalf("FindLeftovers(%s): %v", storageKey(q.Storage), err)
	}
	d := time.Since(begin)
	if d > 10*time.Second {
		t.Errorf("FindLeftovers(%s) took %v", storageKey(q.Storage), d)
	}
	t.Logf("FindLeftovers(%s, %d volumes held): %d in %v", storageKey(q.Storage), len(q.Volumes), len(got), d.Round(time.Millisecond))
	return got
}

func show(list []sdk.Leftover) string {
	var b strings.Builder
	for _, l := range list {
		fmt.Fprintf(&b, "\n  [%s] %s: %s. %s", l.Kind, l.Name, l.Description, l.Remedy)
	}
	return fmt.Sprintf("%d leftovers%s", len(list), b.String())
}

// checkLeftoversHoldNoSecret: no key of the lab in what FindLeftovers
// reports.
func (r *labRig) checkLeftoversHoldNoSecret(t *testing.T, list []sdk.Leftover) {
	t.Helper()
	text := show(list)
	for _, s := range r.lab.Sites {
		kr, _ := os.ReadFile(s.AdminKeyring)
		if m := keyPattern.FindSubmatch(kr); m != nil && strings.Contains(text, string(m[1])) {
			t.Errorf("the leftovers hold the admin key of %s", s.Name)
		}
	}
}

var backquoted = regexp.MustCompile("`([^`]+)`")

// remedySteps splits a remedy into its checks (commands before "Then
// run") and its cleaning commands.
func remedySteps(rem string) (checks, cmds []string) {
	i := strings.Index(rem, "Then run ")
	if i < 0 {
		return nil, nil
	}
	for _, m := range backquoted.FindAllStringSubmatch(rem[:i], -1) {
		checks = append(checks, m[1])
	}
	for _, m := range backquoted.FindAllStringSubmatch(rem[i:], -1) {
		cmds = append(cmds, m[1])
	}
	return checks, cmds
}

// siteOf is the lab site of the storage a leftover's name ends with, or
// the zero site for a host's leftover.
func siteOf(name string, sites map[string]labSite) labSite {
	for k, s := range sites {
		if strings.HasSuffix(name, "on storage "+k) {
			return s
		}
	}
	return labSite{}
}

// runCLI runs a command with the shell, the Ceph CLI pointed at the site
// as its admin.
func runCLI(site labSite, command string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = os.Environ()
	if site.Conf != "" {
		cmd.Env = append(cmd.Env, "CEPH_ARGS=-c "+site.Conf+" --keyring "+site.AdminKeyring+" --id admin")
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// buildPluginAsync builds the plugin executable while the test sets up;
// the returned function waits for it.
func buildPluginAsync(t *testing.T) func() string {
	bin := filepath.Join(t.TempDir(), "ceph")
	done := make(chan error, 1)
	go func() {
		out, err := exec.Command("go", "build", "-tags", "pacific", "-o", bin, "github.com/cdmdr/mirror/plugins/ceph").CombinedOutput()
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, out)
		}
		done <- err
	}()
	t.Cleanup(func() { <-done })
	var err error
	waited := false
	return func() string {
		if !waited {
			err, waited = <-done, true
			done <- err // for the cleanup
		}
		if err != nil {
			t.Fatalf("build the plugin: %v", err)
		}
		return bin
	}
}

// startPlugin starts the plugin executable on stateDir as mirrord starts
// it (binary_test.go).
func startPlugin(t *testing.T, bin func() string, stateDir string) sdk.Backend {
	path := bin()
	script := filepath.Join(filepath.Dir(path), "mirror-plugin-ceph")
	if err := os.WriteFile(script, fmt.Appendf(nil, "#!/bin/sh\nexec %s --state-dir %s\n", path, stateDir), 0o700); err != nil {
		t.Fatal(err)
	}
	return plugintest.StartBinary(t, script)
}

// TestFindLeftoversUnreachable: a storage no monitor answers for is an
// error within the caller's deadline, naming the storage and no secret,
// and the call leaves nothing in the state directory.
func TestFindLeftoversUnreachable(t *testing.T) {
	const secret = "AQD1pQ1rQB2ZCBAA7YeZMpmoe14juJm5CKFdqg=="
	md := fmt.Sprintf(`{"pool":"volumes","conf":"[global]\nmon host = [v1:127.0.0.1:9]\nauth client required = cephx\n",`+
		`"client":"cinder","keyring":%q,"admin_client":"admin","admin_keyring":%q}`, secret, secret)
	stateDir := t.TempDir()
	be := New(sdkLoggerTo(&logBuffer{}), stateDir)
	t.Cleanup(be.Close)
	s := sdk.Storage{ClusterID: 8, StorageID: 1, Type: StorageType, BackendName: "ceph", Metadata: []byte(md)}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	begin := time.Now()
	got, err := be.FindLeftovers(ctx, sdk.LeftoverQuery{Storage: s})
	elapsed := time.Since(begin)
	if err == nil {
		t.Fatalf("FindLeftovers of an unreachable storage = %v, want an error", got)
	}
	if elapsed > 3*time.Second {
		t.Errorf("FindLeftovers took %v with a deadline of 2s", elapsed)
	}
	if !strings.Contains(err.Error(), storageKey(s)) {
		t.Errorf("the error does not name the storage: %v", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("the error holds the key: %v", err)
	}
	if entries, _ := os.ReadDir(stateDir); len(entries) != 0 {
		t.Errorf("FindLeftovers left %d entries in the state directory, want none", len(entries))
	}
	t.Logf("after %v: %v", elapsed.Round(10*time.Millisecond), err)
}
