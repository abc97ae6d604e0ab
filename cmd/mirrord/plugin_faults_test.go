package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/adapters/pluginhost"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// The plugin fault suite end to end (docs/reliability/plugins.md): a
// daemon on two real plugin processes, a (faults injected) and b (left
// alone), volumes of both replicating, while a is killed during each
// volume operation, hangs, and answers garbage. MIRROR_FAULTS=long
// repeats the kills (make faults).

const (
	faultTypeA = "openstack.storage.type.faulta"
	faultTypeB = "openstack.storage.type.faultb"
	// faultCallTimeout bounds each plugin call of these tests (mirrord's
	// action_timeout, 5 min by default).
	faultCallTimeout = 2 * time.Second
)

var (
	faultEnvA = core.EnvironmentID{Source: 31, Target: 33}
	faultEnvB = core.EnvironmentID{Source: 41, Target: 43}
)

// faultRig is the cluster, the plugin host the daemon runs on and the
// directory where a's hangs and garbage are armed.
type faultRig struct {
	*cluster
	host   *pluginhost.Host
	hlog   *syncBuffer // the host's log: the plugins' lines
	faults string
	pathA  string
	d      *daemon
}

// startFaultRig builds the host's test plugin as a and b, runs a host
// on them (its call timeout short) and a daemon on the host.
func startFaultRig(t *testing.T) *faultRig {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &faultRig{cluster: newCluster(t), hlog: &syncBuffer{}, faults: t.TempDir(), pathA: filepath.Join(dir, "a")}
	build := exec.Command("go", "build", "-o", r.pathA, "../../adapters/pluginhost/testdata/testplugin")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the test plugin: %v\n%s", err, out)
	}
	data, err := os.ReadFile(r.pathA)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	r.host = pluginhost.New(pluginhost.Config{Dir: dir, CallTimeout: faultCallTimeout, RescanInterval: time.Hour,
		Plugins: map[string]pluginhost.Settings{
			"a": {Args: []string{"-types=" + faultTypeA, "-faults=" + r.faults}},
			"b": {Args: []string{"-types=" + faultTypeB, "-faults=" + t.TempDir()}},
		}}, slog.New(slog.NewTextHandler(r.hlog, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.host.Run(ctx) }()
	// Registered before the daemon's: it runs after the daemon stopped.
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("plugin host: %v", err)
		}
		r.host.Close()
		if t.Failed() {
			t.Logf("plugin host's log:\n%s", r.hlog.String())
		}
	})
	r.d = r.startOn("d1", r.host)
	for _, e := range []struct {
		env core.EnvironmentID
		typ string
	}{{faultEnvA, faultTypeA}, {faultEnvB, faultTypeB}} {
		for _, s := range []struct{ cluster, storage uint64 }{{5, e.env.Source}, {6, e.env.Target}} {
			key := fmt.Sprintf("clusters/%d/storages/%d", s.cluster, s.storage)
			r.put(key, fmt.Sprintf(`{"cluster_id":%d,"storage_id":%d,"type":"%s","backend_name":"fault"}`, s.cluster, s.storage, e.typ))
			r.put(key+"/metadata", `{"pool":"volumes","keyring":"`+seedKeyring+`"}`)
		}
		r.put(core.EnvironmentKey(e.env), fmt.Sprintf(`{"source_cluster_storage":{"cluster_id":5,"storage_id":%d},"target_cluster_storage":{"cluster_id":6,"storage_id":%d}}`, e.env.Source, e.env.Target))
		r.put(core.EnvironmentKey(e.env)+"/operation", `{"operation":"start"}`)
	}
	r.waitState(core.EnvironmentStatusKey(faultEnvA), core.StateMirroring)
	r.waitState(core.EnvironmentStatusKey(faultEnvB), core.StateMirroring)
	return r
}

// volume writes volume id of env with operation op.
func (r *faultRig) volume(env core.EnvironmentID, id uint64, op string) core.VolumeRef {
	ref := core.VolumeRef{Env: env, VolumeID: id}
	r.put(core.VolumeKey(ref), fmt.Sprintf(`{"source_cluster_storage":{"cluster_id":5,"storage_id":%d},"target_cluster_storage":{"cluster_id":6,"storage_id":%d},"source_volume":{"cluster_id":5,"volume_id":%d,"volume_uuid":"%s"}}`,
		env.Source, env.Target, id, uuidFor(id)))
	r.setOp(ref, op)
	return ref
}

// arm makes a's next call of method about volume id hang.
func (r *faultRig) arm(method string, id uint64) {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.faults, method+"-"+uuidFor(id)), nil, 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// garbage makes a answer kind (testplugin's faulty) about volume id.
func (r *faultRig) garbage(kind string, id uint64) {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.faults, "garbage-"+uuidFor(id)), []byte(kind), 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// hanging waits until a logged that its call of method about id hangs.
func (r *faultRig) hanging(method string, id uint64) {
	r.t.Helper()
	r.waitFor(method+" of "+uuidFor(id)+" hanging in the plugin", 20*time.Second, func() bool {
		for line := range strings.Lines(r.hlog.String()) {
			if strings.Contains(line, "testplugin hanging") && strings.Contains(line, "method="+method) && strings.Contains(line, uuidFor(id)) {
				return true
			}
		}
		return false
	})
}

// pidA is the pid of a's running process.
func (r *faultRig) pidA() int {
	r.t.Helper()
	for _, st := range r.host.Plugins() {
		if st.Path == r.pathA && st.State == pluginhost.StateRunning {
			return st.Pid
		}
	}
	r.t.Fatalf("plugin a not running: %+v", r.host.Plugins())
	return 0
}

// destroyed destroys the volume and waits for its keys to go.
func (r *faultRig) destroyed(ref core.VolumeRef) {
	r.t.Helper()
	r.setOp(ref, "destroy")
	r.waitGone(core.VolumeKey(ref))
}

// states is the volume's status history since rev, as its states (with
// the reason code of each error).
func (r *faultRig) states(ref core.VolumeRef, rev int64) []string {
	var out []string
	for _, v := range r.puts(core.VolumeStatusKey(ref), rev) {
		st, err := core.DecodeStatus([]byte(v))
		if err != nil {
			out = append(out, "undecodable: "+err.Error())
			continue
		}
		s := string(st.StateCode)
		if st.ErrorReason != nil {
			s += " " + st.ErrorReason.Code
		}
		out = append(out, s)
	}
	return out
}

// TestPluginFaultsEndToEnd: with volumes of plugins a and b mirroring, a
// call of a hangs past the call timeout, a is SIGKILLed during each
// volume operation, and a answers garbage. Each operation ends (or ends
// in error with the reason saying what went wrong), every volume left in
// error is destroyed, b's volumes never leave mirroring, and the daemon
// runs throughout.
func TestPluginFaultsEndToEnd(t *testing.T) {
	r := startFaultRig(t)
	var witnessesB []core.VolumeRef
	for id := uint64(1); id <= 3; id++ {
		witnessesB = append(witnessesB, r.volume(faultEnvB, 100+id, "start"))
	}
	witnessA := r.volume(faultEnvA, 200, "start")
	for _, ref := range append(witnessesB, witnessA) {
		r.waitState(core.VolumeStatusKey(ref), core.StateMirroring)
	}
	rev0 := r.revision()
	id := uint64(300)
	next := func() uint64 { id++; return id }

	// A call that hangs: the call timeout ends it, the volume is error
	// saying so, and the retry ends the pause.
	hung := r.volume(faultEnvA, next(), "start")
	r.waitState(core.VolumeStatusKey(hung), core.StateMirroring)
	r.arm("PauseVolume", hung.VolumeID)
	asked := time.Now()
	r.setOp(hung, "pause")
	r.hanging("PauseVolume", hung.VolumeID)
	st := r.waitState(core.VolumeStatusKey(hung), core.StatePaused)
	hangRecovered := time.Since(asked)
	if hist := strings.Join(r.states(hung, rev0), ", "); !strings.Contains(hist, "error cdm-dr.mirror.volume.failure-pause-timeout") {
		t.Fatalf("hung pause went %s, want through error failure-pause-timeout to paused", hist)
	}
	if st.ErrorReason != nil {
		t.Fatalf("paused after the hang with reason %+v", st.ErrorReason)
	}
	t.Logf("hang: PauseVolume hung, ended by the %v call timeout, volume paused %v after the pause was asked", faultCallTimeout, hangRecovered.Round(time.Millisecond))

	// Killed during each operation.
	type killCase struct {
		op, method string
		prepare    string // the volume's operation before: "" for none
	}
	cases := []killCase{
		{"start", "StartVolume", ""},
		{"pause", "PauseVolume", "start"},
		{"stop", "StopVolume", "start"},
		{"destroy", "DestroyVolume", "start"},
	}
	trials := 1
	if os.Getenv("MIRROR_FAULTS") == "long" {
		trials = 5
	}
	var lines []string
	lo, hi := time.Hour, time.Duration(0)
	for trial := range trials {
		for _, c := range cases {
			vid := next()
			var ref core.VolumeRef
			if c.prepare != "" {
				ref = r.volume(faultEnvA, vid, c.prepare)
				r.waitState(core.VolumeStatusKey(ref), core.StateMirroring)
				r.arm(c.method, vid)
				r.setOp(ref, c.op)
			} else {
				r.arm(c.method, vid)
				ref = r.volume(faultEnvA, vid, c.op)
			}
			rev := r.revision()
			r.hanging(c.method, vid)
			pid := r.pidA()
			killed := time.Now()
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			end := r.settle(ref, c.op)
			if c.op == "stop" || c.op == "destroy" {
				// Done on the storage too, not left behind: stop keeps the
				// copy standalone, destroy removes it.
				if rep := r.replicationA(vid); rep.State != ports.ReplicationAbsent || rep.TargetExists != (c.op == "stop") {
					t.Fatalf("after %s killed and finished, plugin a reports %+v", c.op, rep)
				}
			}
			took := time.Since(killed)
			lo, hi = min(lo, took), max(hi, took)
			lines = append(lines, fmt.Sprintf("trial %d, killed during %s: %s after %v (%s)", trial, c.op, end,
				took.Round(time.Millisecond), strings.Join(r.states(ref, rev), " → ")))
		}
	}
	for _, l := range lines {
		t.Log(l)
	}
	t.Logf("killed during an operation: %d kills (%d operations × %d trials), every operation ended, none left in error, "+
		"nothing left on the storage; kill → operation ended %v–%v",
		len(lines), len(cases), trials, lo.Round(time.Millisecond), hi.Round(time.Millisecond))

	// Garbage: each ends in error saying what was wrong, and is destroyed.
	for _, g := range []struct{ kind, want string }{
		{"badprogress", "a progress of 250 %"},
		{"badstate", `an unknown replication state "mirroring"`},
		{"hugedesc", "bytes, cut)"},
	} {
		vid := next()
		r.garbage(g.kind, vid)
		ref := r.volume(faultEnvA, vid, "start")
		st := r.waitState(core.VolumeStatusKey(ref), core.StateError)
		if st.ErrorReason == nil || !strings.Contains(st.ErrorReason.Contents, g.want) || len(st.ErrorReason.Contents) > 8192 {
			t.Fatalf("%s: status %s %+.300v, want error saying %q in at most 8 KiB", g.kind, st.StateCode, st.ErrorReason, g.want)
		}
		t.Logf("garbage %s: error %s", g.kind, st.ErrorReason.Code)
		r.destroyed(ref)
	}

	// The other volumes, of a (whose storage outlives its process, as a
	// real storage does) and of b, never left mirroring.
	for _, ref := range append(witnessesB, witnessA) {
		for _, s := range r.states(ref, rev0) {
			if s != string(core.StateMirroring) {
				t.Fatalf("volume %s went %v during a's faults", core.VolumeKey(ref), r.states(ref, rev0))
			}
		}
		if st, _ := r.status(core.VolumeStatusKey(ref)); st.StateCode != core.StateMirroring {
			t.Fatalf("volume %s is %+v", core.VolumeKey(ref), st)
		}
	}
	select {
	case <-r.d.done:
		t.Fatalf("the daemon stopped: %v", r.d.err)
	default:
	}
	if strings.Contains(r.d.logs.String()+r.hlog.String(), seedKeyring) {
		t.Fatal("a keyring reached the logs")
	}
}

// replicationA is what plugin a reports of volume id.
func (r *faultRig) replicationA(id uint64) ports.VolumeReplication {
	r.t.Helper()
	be, err := r.host.For(r.t.Context(), faultTypeA)
	if err != nil {
		r.t.Fatal(err)
	}
	target := ports.Storage{ClusterID: 6, StorageID: faultEnvA.Target, Type: faultTypeA, Metadata: []byte(`{}`)}
	rep, err := be.VolumeStatus(r.t.Context(), ports.Volume{VolumeUUID: uuidFor(id), ClusterID: 5, VolumeID: id,
		Environment: ports.Environment{ID: faultEnvA.String(), Target: target}})
	if err != nil {
		r.t.Fatalf("VolumeStatus of %d: %v", id, err)
	}
	return rep
}

// settle waits until the volume's operation op ended after a's kill:
// mirroring (start), paused (pause), the keys gone (stop, destroy); it
// returns which. An error that stays fails the test by the deadline.
func (r *faultRig) settle(ref core.VolumeRef, op string) string {
	r.t.Helper()
	var end string
	r.waitFor(fmt.Sprintf("volume %d's %s to end", ref.VolumeID, op), 60*time.Second, func() bool {
		st, ok := r.status(core.VolumeStatusKey(ref))
		switch {
		case !ok && r.get(core.VolumeKey(ref)) == "":
			end = "keys deleted"
		case !ok:
			return false
		case (op == "start" && st.StateCode == core.StateMirroring) || (op == "pause" && st.StateCode == core.StatePaused):
			end = string(st.StateCode)
		default:
			return false
		}
		return true
	})
	return end
}

// puts returns every value put at key after rev, oldest first. Unlike
// cluster.history it does not wait for an event on a quiet key: progress
// requests tell when the watch has caught up with now (asked again until
// one is answered, as one sent before the watch is set up is lost).
func (r *faultRig) puts(key string, rev int64) []string {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := r.revision()
	w := r.cli.Watch(ctx, key, clientv3.WithRev(rev+1))
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var out []string
	for {
		select {
		case <-tick.C:
			_ = r.cli.RequestProgress(ctx) // lost before the watch is set up: asked again
		case resp, ok := <-w:
			if !ok {
				r.t.Fatalf("watch %s ended before revision %d", key, now)
			}
			if resp.Err() != nil {
				r.t.Fatalf("watch %s: %v", key, resp.Err())
			}
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypePut {
					out = append(out, string(ev.Kv.Value))
				}
			}
			if resp.Header.Revision >= now {
				return out
			}
		}
	}
}
