package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"gopkg.in/yaml.v3"

	"github.com/cdmdr/mirror/core"
)

// Crash anywhere (issue 15): mirrord processes, each with the example
// plugin keeping the storage in a shared state directory, run while the
// test plays the DR manager over a few volumes (operations chosen at
// random among those docs/contract.md §4.2 allows from the status read,
// written only if that status did not change meanwhile), and kills a
// daemon with its plugin (SIGKILL) at random moments, then starts it
// again. At the end, with the daemons left alone: every volume reaches
// the end state of its last operation, no operation is lost, and the
// storage's call log shows no side effect done twice.
//
// Short form in make test: one daemon, 40 operations with the storage
// kept, 16 with the storage forgotten at each kill (a restarted in-memory
// plugin). MIRROR_FAULTS=long (make faults): 240 operations each with one
// daemon, two daemons, three daemons, and the storage forgotten.
// MIRROR_FAULTS_SEED repeats a run's operations and kill schedule (the
// moments a kill lands in the daemon's work still vary with timing).
func TestCrashAnywhere(t *testing.T) {
	seed := faultsSeed(t)
	if os.Getenv("MIRROR_FAULTS") == "long" {
		t.Run("one daemon", func(t *testing.T) { runCrash(t, seed, crashPlan{ops: 240, volumes: 16, daemons: 1}) })
		t.Run("two daemons", func(t *testing.T) { runCrash(t, seed+1, crashPlan{ops: 240, volumes: 16, daemons: 2}) })
		t.Run("three daemons", func(t *testing.T) { runCrash(t, seed+3, crashPlan{ops: 240, volumes: 16, daemons: 3}) })
		t.Run("storage forgotten", func(t *testing.T) {
			runCrash(t, seed+2, crashPlan{ops: 240, volumes: 16, daemons: 1, forget: true})
		})
		return
	}
	t.Run("storage kept", func(t *testing.T) { runCrash(t, seed, crashPlan{ops: 40, volumes: 8, daemons: 1}) })
	t.Run("storage forgotten", func(t *testing.T) {
		runCrash(t, seed+2, crashPlan{ops: 16, volumes: 4, daemons: 1, forget: true})
	})
}

type crashPlan struct {
	ops, volumes, daemons int
	// forget: the storage forgets everything at each kill (the example
	// plugin without a state directory, as an outsider runs it: a
	// restarted plugin loses its replications). One daemon only.
	forget bool
}

// readyVolumes are those whose last operation a daemon has taken up: the
// DR manager may write the next.
func readyVolumes(vols []*crashVolume, views map[core.VolumeRef]crashView) []*crashVolume {
	var ready []*crashVolume
	for _, v := range vols {
		if taken(v.op, views[v.ref]) {
			ready = append(ready, v)
		}
	}
	return ready
}

// faultsSeed is MIRROR_FAULTS_SEED, or a new one; printed either way.
func faultsSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("MIRROR_FAULTS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("MIRROR_FAULTS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (MIRROR_FAULTS_SEED=%d repeats this run)", seed, seed)
	return seed
}

// crashVolume is one volume as the test's DR manager knows it.
type crashVolume struct {
	ref  core.VolumeRef
	uuid string
	op   core.Operation // the last operation written; "" none yet
}

// forgetStorage makes the storage forget everything, as the example
// plugin without a state directory does when it restarts. It takes the
// storage's lock: a killed plugin may still be finishing a call.
func forgetStorage(t *testing.T, stateDir string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(stateDir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	if err := os.Remove(filepath.Join(stateDir, "state.json")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// crashView is one volume's keys at one moment.
type crashView struct {
	record, opKey bool
	recordRev     int64
	op            core.Operation
	opRev         int64
	status        *core.Status
	statusRev     int64
}

func runCrash(t *testing.T, seed uint64, p crashPlan) {
	rng := rand.New(rand.NewPCG(seed, 0))
	c := newCluster(t)
	pluginDir := buildExamplePlugin(t)
	stateDir := t.TempDir()
	t.Cleanup(func() { killAll(processesMentioning(stateDir)) }) // plugins orphaned by a kill
	for _, s := range []string{"clusters/5/storages/11", "clusters/6/storages/13"} {
		parts := strings.Split(s, "/")
		c.put(s, `{"cluster_id":`+parts[1]+`,"storage_id":`+parts[3]+`,"type":"`+exampleType+`","backend_name":"example"}`)
		c.put(s+"/metadata", `{"pool":"volumes"}`)
	}
	c.seedEnvironment("start")
	daemons := make([]*crashDaemon, p.daemons)
	for i := range daemons {
		daemons[i] = newCrashDaemon(t, c, fmt.Sprintf("d%d", i+1), pluginDir, stateDir)
		daemons[i].start(t)
	}
	c.waitFor("the environment mirroring", 60*time.Second, func() bool {
		st, ok := c.status(core.EnvironmentStatusKey(seedEnv))
		return ok && st.StateCode == core.StateMirroring
	})

	vols := make([]*crashVolume, p.volumes)
	for i := range vols {
		id := uint64(100 + i)
		vols[i] = &crashVolume{ref: core.VolumeRef{Env: seedEnv, VolumeID: id}, uuid: uuidFor(id)}
	}

	// The operations, and kills at random moments among them: after one
	// operation in four, a daemon is killed 0-400 ms later, and started
	// again 0-500 ms after that, operations going on meanwhile.
	start := time.Now()
	deadline := start.Add(time.Duration(p.ops) * 1500 * time.Millisecond)
	kills, issued, refused := 0, 0, 0
	killAt := make([]time.Time, len(daemons))
	restartAt := make([]time.Time, len(daemons))
	kill := func(i int) {
		daemons[i].kill(t)
		kills++
		killAt[i] = time.Time{}
		if p.forget {
			forgetStorage(t, stateDir)
		}
	}
	for issued < p.ops {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d operations could be written in %s: volumes never took their operation; %s",
				issued, p.ops, time.Since(start).Round(time.Millisecond), describeVolumes(c, vols))
		}
		for i, d := range daemons {
			switch {
			case !d.running() && time.Now().After(restartAt[i]):
				d.start(t)
			case d.running() && !killAt[i].IsZero() && time.Now().After(killAt[i]):
				kill(i)
				restartAt[i] = time.Now().Add(time.Duration(rng.IntN(500)) * time.Millisecond)
			}
		}
		views := crashViews(t, c)
		ready := readyVolumes(vols, views)
		if len(ready) == 0 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		v := ready[rng.IntN(len(ready))]
		wasRefused := refusedOp(v.op, views[v.ref])
		if op, ok := writeOperation(t, c, rng, v, views[v.ref]); ok {
			if wasRefused {
				refused++
				t.Logf("volume %s: %s", core.VolumeKey(v.ref), views[v.ref].status.ErrorReason.Contents)
			}
			v.op = op
			issued++
			if i := rng.IntN(len(daemons)); rng.IntN(4) == 0 && killAt[i].IsZero() {
				killAt[i] = time.Now().Add(time.Duration(rng.IntN(400)) * time.Millisecond)
			}
		}
		time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
	}
	for i, d := range daemons {
		if !d.running() {
			time.Sleep(time.Until(restartAt[i]))
			d.start(t)
		}
	}
	// The last kill, while the last operations are under way. The time to
	// converge is measured for the volumes not at their end then.
	time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
	victim := rng.IntN(len(daemons))
	atKill := crashViews(t, c)
	kill(victim)
	lastKill := time.Now()
	time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
	daemons[victim].start(t)

	// Convergence, the daemons left alone: each volume at the end state
	// of its last operation, and the storage saying the same, all in one
	// look.
	storagePath := filepath.Join(stateDir, "state.json")
	pendingSince := map[core.VolumeRef]bool{} // not converged at some look after the last kill
	for _, v := range vols {
		if !atEnd(v.op, atKill[v.ref]) {
			pendingSince[v.ref] = true
		}
	}
	converged := map[core.VolumeRef]time.Duration{}
	limit := lastKill.Add(90 * time.Second)
	for time.Now().Before(limit) {
		views, storage := crashViews(t, c), readStorage(t, storagePath)
		all := true
		for _, v := range vols {
			if !atEnd(v.op, views[v.ref]) || storageDiff(v, storage) != "" {
				all = false
				pendingSince[v.ref] = true
				delete(converged, v.ref)
			} else if _, ok := converged[v.ref]; !ok {
				converged[v.ref] = time.Since(lastKill)
			}
			// A refused last operation is answered as the DR manager does:
			// with another one the status allows.
			if refusedOp(v.op, views[v.ref]) {
				if op, ok := writeOperation(t, c, rng, v, views[v.ref]); ok {
					refused++
					t.Logf("volume %s: %s", core.VolumeKey(v.ref), views[v.ref].status.ErrorReason.Contents)
					v.op = op
					issued++
				}
			}
		}
		if all {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	views, storage := crashViews(t, c), readStorage(t, storagePath)
	stuck, lost, mismatched := 0, 0, 0
	for _, v := range vols {
		view := views[v.ref]
		if d := storageDiff(v, storage); d != "" {
			mismatched++
			t.Errorf("volume %s: last operation %s, %s", core.VolumeKey(v.ref), v.op, d)
		}
		if atEnd(v.op, view) {
			continue
		}
		if taken(v.op, view) {
			stuck++
		} else {
			lost++
		}
		t.Errorf("volume %s: last operation %s, not at its end: %s", core.VolumeKey(v.ref), v.op, view.describe())
	}

	// The storage's view of the calls.
	calls := readCallLog(t, filepath.Join(stateDir, "calls.log"))
	dups, noops, failed := checkCalls(t, calls, p.forget)

	for _, d := range daemons {
		if strings.Contains(d.logs(), "DATA RACE") {
			t.Errorf("%s reported a data race", d.id)
		}
	}
	var times []time.Duration
	for ref := range pendingSince {
		if d, ok := converged[ref]; ok {
			times = append(times, d)
		}
	}
	pending := len(pendingSince)
	slices.Sort(times)
	t.Logf("daemons %d, volumes %d, storage forgotten at each kill %v: operations %d (%d refused), kills %d, stuck %d, lost %d, "+
		"duplicated side effects %d, storage different from the status %d; calls changing the storage %d (%d failed, %d "+
		"found nothing to do); %d volumes pending at the last kill converged after it in min %s, median %s, "+
		"max %s; run took %s",
		p.daemons, p.volumes, p.forget, issued, refused, kills, stuck, lost, dups, mismatched, len(calls), failed, noops,
		pending, quantile(times, 0).Round(time.Millisecond), quantile(times, 0.5).Round(time.Millisecond), quantile(times, 1).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// writeOperation picks an operation the rules allow from the volume's
// status and writes it, only if the keys it read did not change since:
// the DR manager's part. A volume whose keys are gone is created again
// with start.
func writeOperation(t *testing.T, c *cluster, rng *rand.Rand, v *crashVolume, view crashView) (core.Operation, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recKey, opKey, stKey := core.VolumeKey(v.ref), core.VolumeOperationKey(v.ref), core.VolumeStatusKey(v.ref)
	var op core.Operation
	var puts []clientv3.Op
	if !view.record {
		op = core.OpStart
		puts = append(puts, clientv3.OpPut(recKey, fmt.Sprintf(`{"source_cluster_storage":{"cluster_id":5,"storage_id":11},`+
			`"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":%d,"volume_uuid":"%s"}}`,
			v.ref.VolumeID, v.uuid)))
	} else {
		var allowed []core.Operation
		for _, o := range core.VolumeOperations {
			if o != v.op && view.status != nil && core.CanStartFrom(o, view.status.StateCode) {
				allowed = append(allowed, o)
			}
		}
		if len(allowed) == 0 {
			return "", false
		}
		op = allowed[rng.IntN(len(allowed))]
	}
	puts = append(puts, clientv3.OpPut(opKey, `{"operation":"`+string(op)+`"}`))
	resp, err := c.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.ModRevision(recKey), "=", view.recordRev),
		clientv3.Compare(clientv3.ModRevision(opKey), "=", view.opRev),
		clientv3.Compare(clientv3.ModRevision(stKey), "=", view.statusRev),
	).Then(puts...).Commit()
	if err != nil {
		t.Fatalf("write operation %s of %s: %v", op, recKey, err)
	}
	return op, resp.Succeeded
}

// taken reports whether the volume's last operation was taken up by a
// daemon (a status written under it, or its keys gone), so that the
// next may be written: an operation overwritten before any daemon saw
// it would be neither done nor lost.
func taken(op core.Operation, v crashView) bool {
	switch {
	case op == "" || !v.record && !v.opKey && v.status == nil:
		return true
	case op == core.OpDestroy:
		return false // it writes no status: taken once the keys are gone
	}
	return v.status != nil && v.status.Operation == op || refusedOp(op, v)
}

// refusedOp reports whether the daemon refused op (docs/contract.md
// §4.1): the DR manager wrote it from a status that an action under way
// then changed (the target deleted while it asked for a stop that keeps
// it). The refusal is the daemon's answer; the DR manager answers it.
func refusedOp(op core.Operation, v crashView) bool {
	return op != "" && v.op == op && v.status != nil && v.status.ErrorReason != nil &&
		strings.HasSuffix(v.status.ErrorReason.Code, ".refused-operation-"+string(op))
}

// atEnd reports whether the volume is at the end state of op.
func atEnd(op core.Operation, v crashView) bool {
	gone := !v.record && !v.opKey && v.status == nil
	switch op {
	case "", core.OpStop, core.OpStopAndDelete, core.OpDestroy:
		return gone
	}
	want := core.StateMirroring
	if op == core.OpPause {
		want = core.StatePaused
	}
	return v.op == op && v.status != nil && v.status.Operation == op && v.status.StateCode == want && v.status.ErrorReason == nil
}

func (v crashView) describe() string {
	s := fmt.Sprintf("record %v, operation %q", v.record, v.op)
	if v.status == nil {
		return s + ", no status"
	}
	s += fmt.Sprintf(", status %s under %q", v.status.StateCode, v.status.Operation)
	if v.status.ErrorReason != nil {
		s += fmt.Sprintf(" (%s: %s)", v.status.ErrorReason.Code, v.status.ErrorReason.Contents)
	}
	return s
}

func describeVolumes(c *cluster, vols []*crashVolume) string {
	views := crashViewsOrNil(c)
	var b strings.Builder
	for _, v := range vols {
		fmt.Fprintf(&b, "\n  %s (last operation %q): %s", core.VolumeKey(v.ref), v.op, views[v.ref].describe())
	}
	return b.String()
}

// crashViews reads every volume's keys at one revision.
func crashViews(t *testing.T, c *cluster) map[core.VolumeRef]crashView {
	t.Helper()
	views, err := readCrashViews(c)
	if err != nil {
		t.Fatal(err)
	}
	return views
}

func crashViewsOrNil(c *cluster) map[core.VolumeRef]crashView {
	views, _ := readCrashViews(c)
	return views
}

func readCrashViews(c *cluster) (map[core.VolumeRef]crashView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	prefix := core.VolumeKey(core.VolumeRef{Env: seedEnv, VolumeID: 1})
	prefix = prefix[:strings.LastIndexByte(prefix, '/')+1] // the environment's volumes
	resp, err := c.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read volumes: %w", err)
	}
	views := map[core.VolumeRef]crashView{}
	for _, kv := range resp.Kvs {
		pk, err := core.ParseKey(string(kv.Key))
		if err != nil {
			continue
		}
		v := views[pk.Volume]
		switch pk.Kind {
		case core.KindVolume:
			v.record, v.recordRev = true, kv.ModRevision
		case core.KindVolumeOperation:
			v.opKey, v.opRev = true, kv.ModRevision
			v.op, _ = core.DecodeVolumeOperation(kv.Value)
		case core.KindVolumeStatus:
			st, err := core.DecodeStatus(kv.Value)
			if err != nil {
				return nil, fmt.Errorf("status %s: %w", kv.Key, err)
			}
			v.status, v.statusRev = &st, kv.ModRevision
		default:
			continue
		}
		views[pk.Volume] = v
	}
	return views, nil
}

// crashCall is a line of the example plugin's calls.log, or of the Ceph
// plugin's --call-log.
type crashCall struct {
	PID    int    `json:"pid"`
	Call   string `json:"call"`
	Volume string `json:"volume"`
	Before *struct {
		State        string `json:"state"`
		TargetExists bool   `json:"target_exists"`
	} `json:"before"`
	Err string `json:"err"`
	// Phase and BeforeErr are the Ceph plugin's (plugins/ceph/cephrbd/
	// calllog.go): "attempted" lines, written before the call, carry
	// before; "done" lines the error. The example plugin writes neither.
	Phase     string `json:"phase"`
	BeforeErr string `json:"before_err"`
}

func readCallLog(t *testing.T, path string) []crashCall {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("the storage's call log: %v", err)
	}
	defer f.Close()
	var calls []crashCall
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l crashCall
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Errorf("call log line %q: %v", sc.Text(), err)
			continue
		}
		calls = append(calls, l)
	}
	return calls
}

// checkCalls counts, from the storage's view, the side effects done
// twice: a replication set up on a volume that had one, a target deleted
// that was not there, a pause of a paused volume, a resume of a volume
// replaying. noops are calls that found nothing to do: a stop or destroy
// of a volume with no replication (repeated after a crash between the
// call and the deletion of the keys, the contract's at-least-once; or
// asked of a volume a stop or the storage's loss had left with none);
// failed are calls that returned an error.
//
// With forget, a target deleted that was not there is a no-op: the
// storage forgot the volume under a stop_and_delete under way.
func checkCalls(t *testing.T, calls []crashCall, forget bool) (dups, noops, failed int) {
	t.Helper()
	for _, l := range calls {
		if l.Err != "" {
			failed++
		}
		if l.Before == nil {
			continue
		}
		b := l.Before
		var dup string
		switch l.Call {
		case "StartVolume":
			if b.State == "syncing" || b.State == "replaying" {
				dup = "set up again while replicated"
			}
		case "DeleteTarget":
			switch {
			case b.State == "absent" && !b.TargetExists && forget:
				noops++
			case b.State == "absent" && !b.TargetExists:
				dup = "target deleted that was not there"
			}
		case "PauseVolume":
			if b.State == "paused" {
				dup = "paused again"
			}
		case "ResumeVolume":
			if b.State == "syncing" || b.State == "replaying" {
				dup = "resumed while replaying"
			}
		case "StopVolume", "DestroyVolume":
			if b.State == "absent" {
				noops++
			}
		}
		if dup != "" {
			dups++
			t.Errorf("duplicated side effect: %s of volume %s (plugin pid %d): %s", l.Call, l.Volume, l.PID, dup)
		}
	}
	return dups, noops, failed
}

// crashStorage is the storage's state (the example plugin's state.json):
// replication by volume UUID.
type crashStorage map[string]struct {
	State        string
	TargetExists bool
}

func readStorage(t *testing.T, path string) crashStorage {
	t.Helper()
	data, err := os.ReadFile(path) // replaced whole by a rename: never half written
	switch {
	case os.IsNotExist(err):
		return crashStorage{} // forgotten at a kill, and nothing kept since
	case err != nil:
		t.Fatalf("the storage's state: %v", err)
	}
	var st struct {
		Volumes crashStorage `json:"volumes"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("the storage's state: %v", err)
	}
	return st.Volumes
}

// storageDiff says how the storage differs from what the volume's last
// operation leaves there; "" when it does not.
func storageDiff(v *crashVolume, st crashStorage) string {
	rep, ok := st[v.uuid]
	state := "absent"
	if ok {
		state = rep.State
	}
	want := "absent" // stop, destroy: no replication; a kept copy may stay
	switch v.op {
	case core.OpStart, core.OpResume:
		want = "replaying"
	case core.OpPause:
		want = "paused"
	case core.OpStopAndDelete:
		if ok {
			return fmt.Sprintf("the storage has %s (target copy %v), want nothing at all", state, rep.TargetExists)
		}
	}
	if state != want {
		return fmt.Sprintf("the storage has %s (target copy %v), want %s", state, rep.TargetExists, want)
	}
	return ""
}

// crashDaemon is a mirrord process, killed and started again by the test:
// the test binary running mirrord's main (runAsMirrord), as a service
// manager runs it, with the example plugin keeping the storage in the
// shared state directory.
type crashDaemon struct {
	id      string
	cfgFile string
	logFile string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// newCrashDaemon is a daemon with the example plugin keeping the storage
// in stateDir and logging its calls there.
func newCrashDaemon(t *testing.T, c *cluster, id, pluginDir, stateDir string) *crashDaemon {
	t.Helper()
	return newDaemonProcess(t, id, map[string]any{
		"daemon_id":  id,
		"etcd":       map[string]any{"endpoints": c.etcd.Endpoints(), "session_ttl": "2s"},
		"nats":       map[string]any{"url": c.nats.URL()},
		"plugin_dir": pluginDir,
		"plugins": map[string]any{
			"example": map[string]any{"args": []string{"--state-dir", stateDir, "--call-log"}},
		},
		"resync_interval":    "5s",
		"poll_interval":      "1s",
		"fast_poll_interval": "200ms",
		"log_level":          "debug",
		"log_format":         "json",
		"http_address":       "127.0.0.1:0",
	})
}

// newDaemonProcess writes cfg as a daemon's configuration file; the daemon
// runs at start, and is stopped, its last logs shown on a failure, at the
// test's end.
func newDaemonProcess(t *testing.T, id string, cfg map[string]any) *crashDaemon {
	t.Helper()
	dir := t.TempDir()
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := &crashDaemon{id: id, cfgFile: filepath.Join(dir, "mirrord.yaml"), logFile: filepath.Join(dir, "mirrord.log")}
	if err := os.WriteFile(d.cfgFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("last logs of %s:\n%s", id, lastLines(d.logs(), 80))
		}
	})
	return d
}

func (d *crashDaemon) running() bool {
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// start runs the daemon; its log goes on in the same file.
func (d *crashDaemon) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(d.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command(os.Args[0], "--config", d.cfgFile)
	d.cmd.Env = mirrordEnv(t)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", d.id, err)
	}
	exited, cmd := make(chan struct{}), d.cmd
	d.exited = exited
	go func() { _ = cmd.Wait(); close(exited) }()
}

// kill ends the daemon and its plugin at once, as a crash of its host.
func (d *crashDaemon) kill(t *testing.T) {
	t.Helper()
	pids := append([]int{d.cmd.Process.Pid}, childrenOf(d.cmd.Process.Pid)...)
	killAll(pids)
	<-d.exited
}

// stop ends the daemon gracefully, as its service manager does.
func (d *crashDaemon) stop(t *testing.T) {
	if !d.running() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop within 30s of SIGTERM", d.id)
		d.kill(t)
	}
}

func (d *crashDaemon) logs() string {
	b, _ := os.ReadFile(d.logFile)
	return string(b)
}
