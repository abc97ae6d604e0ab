package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cdmdr/mirror/ports"
)

// The plugin fault suite (docs/reliability/plugins.md): real plugin
// processes killed during a call, hanging, or answering garbage, while
// other volumes of the same plugin and of another plugin keep being
// served. MIRROR_FAULTS=long repeats each scenario (make faults).

const (
	faultTypeA = "openstack.storage.type.faulta"
	faultTypeB = "openstack.storage.type.faultb"
)

// faultTrials is how many times each scenario runs: once in make test,
// more under make faults.
func faultTrials() int {
	if os.Getenv("MIRROR_FAULTS") == "long" {
		return 10
	}
	return 1
}

// faultPlugin is one of the rig's two plugins.
type faultPlugin struct {
	path   string // the plugin's file
	faults string // its directory of armed hangs
	be     ports.StorageBackend
	env    ports.Environment
}

// faultRig is a host over two test plugins run with -faults, a and b,
// each serving its own type with one environment prepared.
type faultRig struct {
	t    *testing.T
	host *Host
	log  *logRecorder
	a, b *faultPlugin
}

func startFaultRig(t *testing.T, callTimeout time.Duration) *faultRig {
	t.Helper()
	dir := t.TempDir()
	r := &faultRig{t: t, log: newLogRecorder()}
	var plugins []*faultPlugin
	for _, p := range []struct{ name, typ string }{{"a", faultTypeA}, {"b", faultTypeB}} {
		faults := t.TempDir()
		plugins = append(plugins, &faultPlugin{faults: faults,
			path: writePlugin(t, dir, p.name, "-types="+p.typ, "-faults="+faults)})
	}
	r.a, r.b = plugins[0], plugins[1]
	r.host = startHost(t, Config{Dir: dir, CallTimeout: callTimeout, RescanInterval: time.Hour}, slog.New(r.log))
	for _, p := range []struct {
		fp  *faultPlugin
		typ string
	}{{r.a, faultTypeA}, {r.b, faultTypeB}} {
		be, err := r.host.For(t.Context(), p.typ)
		if err != nil {
			t.Fatal(err)
		}
		p.fp.be, p.fp.env = be, faultEnv(p.typ)
		if err := be.PrepareEnvironment(t.Context(), p.fp.env); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// faultEnv is a fresh environment of storageType whose source holds
// every volume (memstorage's AutoSource: the metadata lists none).
func faultEnv(storageType string) ports.Environment {
	n := ids.Add(1)
	return ports.Environment{
		ID:     fmt.Sprintf("storage.%d.%d", 2*n, 2*n+1),
		Source: ports.Storage{ClusterID: 1, StorageID: 2 * n, Type: storageType, BackendName: "fault", Metadata: json.RawMessage(`{}`)},
		Target: ports.Storage{ClusterID: 2, StorageID: 2*n + 1, Type: storageType, BackendName: "fault", Metadata: json.RawMessage(`{}`)},
	}
}

func (p *faultPlugin) vol(uuid string) ports.Volume {
	n := ids.Add(1)
	return ports.Volume{Environment: p.env, ClusterID: 1, VolumeID: n, VolumeUUID: uuid}
}

// arm makes the plugin's next call of method about uuid hang.
func (p *faultPlugin) arm(t *testing.T, method, uuid string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(p.faults, method+"-"+uuid), nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startReplaying starts vol's replication and waits until it replays
// (memstorage's first copy takes no time unless told).
func (p *faultPlugin) startReplaying(t *testing.T, vol ports.Volume) {
	t.Helper()
	if err := p.be.StartVolume(t.Context(), vol); err != nil {
		t.Fatalf("StartVolume %s: %v", vol.VolumeUUID, err)
	}
	eventually(t, vol.VolumeUUID+" replaying", func() bool {
		st, err := p.be.VolumeStatus(t.Context(), vol)
		return err == nil && st.State == ports.ReplicationReplaying
	})
}

// witness keeps asking the status of one replicating volume while a
// fault goes on, and counts what it got.
type witness struct {
	p    *faultPlugin
	vol  ports.Volume
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	ok       int
	failures []error
}

func (r *faultRig) watch(p *faultPlugin, uuid string) *witness {
	r.t.Helper()
	w := &witness{p: p, vol: p.vol(uuid), stop: make(chan struct{}), done: make(chan struct{})}
	p.startReplaying(r.t, w.vol)
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			_, err := p.be.VolumeStatus(context.Background(), w.vol)
			w.mu.Lock()
			if err != nil {
				w.failures = append(w.failures, err)
			} else {
				w.ok++
			}
			w.mu.Unlock()
		}
	}()
	r.t.Cleanup(w.end)
	return w
}

// counts are the witness's answers so far.
func (w *witness) counts() (ok int, failures []error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ok, append([]error(nil), w.failures...)
}

func (w *witness) end() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// op runs one volume operation of the port by its method name.
func op(ctx context.Context, be ports.StorageBackend, method string, vol ports.Volume) error {
	var err error
	switch method {
	case "StartVolume":
		err = be.StartVolume(ctx, vol)
	case "PauseVolume":
		err = be.PauseVolume(ctx, vol)
	case "ResumeVolume":
		err = be.ResumeVolume(ctx, vol)
	case "StopVolume":
		_, err = be.StopVolume(ctx, vol)
	case "DestroyVolume":
		_, err = be.DestroyVolume(ctx, vol)
	case "VolumeStatus":
		_, err = be.VolumeStatus(ctx, vol)
	default:
		panic("no operation " + method)
	}
	return err
}

// ready brings vol to where method applies: started (and paused, for a
// resume); nothing for a start.
func (p *faultPlugin) ready(t *testing.T, method string, vol ports.Volume) {
	t.Helper()
	if method == "StartVolume" {
		return
	}
	p.startReplaying(t, vol)
	if method == "ResumeVolume" {
		if err := p.be.PauseVolume(t.Context(), vol); err != nil {
			t.Fatal(err)
		}
	}
}

// hanging waits until the plugin logged that its call about uuid hangs.
func (r *faultRig) hanging(uuid string, errc <-chan error) {
	r.t.Helper()
	eventually(r.t, uuid+"'s call hanging in the plugin", func() bool {
		select {
		case err := <-errc:
			r.t.Fatalf("the armed call about %s returned %v before hanging", uuid, err)
		default:
		}
		for _, rec := range r.log.find("testplugin hanging") {
			if rec["volume_uuid"] == uuid {
				return true
			}
		}
		return false
	})
}

var faultOps = []string{"StartVolume", "PauseVolume", "ResumeVolume", "StopVolume", "DestroyVolume"}

// TestFaultPluginKilledDuringOperation: a plugin SIGKILLed while it
// serves each volume operation fails that call as retryable, saying it
// exited; it is started again and the operation, asked again, ends. The
// other plugin answers every call throughout; the killed plugin's other
// volume only ever sees retryable errors.
func TestFaultPluginKilledDuringOperation(t *testing.T) {
	r := startFaultRig(t, 30*time.Second)
	other := r.watch(r.b, "witness-b")
	var recoveries []time.Duration
	kills := 0
	for trial := range faultTrials() {
		for _, method := range faultOps {
			same := r.watch(r.a, fmt.Sprintf("witness-a-%d-%s", trial, method))
			vol := r.a.vol(fmt.Sprintf("kill-%d-%s", trial, method))
			r.a.ready(t, method, vol)
			r.a.arm(t, method, vol.VolumeUUID)
			errc := make(chan error, 1)
			go func() { errc <- op(context.Background(), r.a.be, method, vol) }()
			r.hanging(vol.VolumeUUID, errc)
			okB, _ := other.counts()

			pid := status(t, r.host, r.a.path).Pid
			killed := time.Now()
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			kills++
			var err error
			select {
			case err = <-errc:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s did not return within 10s of the plugin's death", method)
			}
			if !errors.Is(err, ports.ErrRetryable) || !strings.Contains(err.Error(), "exited during the call") {
				t.Fatalf("%s during the kill = %v, want retryable saying the plugin exited", method, err)
			}

			// Asked again, as the engine does, it ends once a new process
			// serves (the test plugin's storage outlives its process, as
			// a real storage does).
			eventually(t, method+" ended after the restart", func() bool {
				return op(t.Context(), r.a.be, method, vol) == nil
			})
			recoveries = append(recoveries, time.Since(killed))
			if st := status(t, r.host, r.a.path); st.State != StateRunning || st.Pid == pid {
				t.Fatalf("after the kill: %+v, want a new process running", st)
			}
			if okNow, _ := other.counts(); okNow <= okB {
				t.Fatalf("plugin b answered no call while a restarted (%d before, %d after)", okB, okNow)
			}
			if st, err := r.a.be.VolumeStatus(t.Context(), same.vol); err != nil || st.State != ports.ReplicationReplaying {
				t.Fatalf("a's other volume after the restart: %+v, %v; want still replaying", st, err)
			}
			same.end()
			if _, fails := same.counts(); len(fails) > 0 {
				for _, f := range fails {
					if !errors.Is(f, ports.ErrRetryable) {
						t.Fatalf("a's other volume got %v during the kill, want only retryable errors", f)
					}
				}
			}
		}
	}
	other.end()
	okB, failsB := other.counts()
	if len(failsB) > 0 {
		t.Fatalf("plugin b failed %d of its calls while a was killed: first %v", len(failsB), failsB[0])
	}
	t.Logf("plugin killed during an operation: trials %d (%d operations × %d), kills %d, calls lost 0, "+
		"plugin b calls %d ok / 0 failed, time to recover (kill → the operation ended) %s",
		kills, len(faultOps), faultTrials(), kills, okB, spread(recoveries))
}

// TestFaultPluginHangs: a call the plugin never answers ends at the call
// timeout as retryable, without a restart; meanwhile the same plugin and
// the other answer every other call, and the call asked again ends.
func TestFaultPluginHangs(t *testing.T) {
	const callTimeout = 300 * time.Millisecond
	r := startFaultRig(t, callTimeout)
	other := r.watch(r.b, "witness-b")
	same := r.watch(r.a, "witness-a")
	var took []time.Duration
	hangs := 0
	for trial := range faultTrials() {
		for _, method := range append(faultOps, "VolumeStatus") {
			vol := r.a.vol(fmt.Sprintf("hang-%d-%s", trial, method))
			r.a.ready(t, method, vol)
			r.a.arm(t, method, vol.VolumeUUID)
			begin := time.Now()
			err := op(t.Context(), r.a.be, method, vol)
			d := time.Since(begin)
			hangs++
			if !errors.Is(err, ports.ErrRetryable) || !errors.Is(err, context.DeadlineExceeded) ||
				!strings.Contains(err.Error(), "no answer within 300ms (the plugin call timeout)") {
				t.Fatalf("%s hanging = %v, want retryable, DeadlineExceeded, saying the call timeout ran out", method, err)
			}
			if d < callTimeout || d > callTimeout+2*time.Second {
				t.Fatalf("%s hanging took %v, want the call timeout (%v)", method, d, callTimeout)
			}
			took = append(took, d)
			if err := op(t.Context(), r.a.be, method, vol); err != nil {
				t.Fatalf("%s asked again after it hung: %v", method, err)
			}
		}
	}
	if st := status(t, r.host, r.a.path); st.Restarts != 0 {
		t.Fatalf("a hanging call restarted the plugin: %+v", st)
	}
	other.end()
	same.end()
	okA, failsA := same.counts()
	okB, failsB := other.counts()
	if len(failsA)+len(failsB) > 0 {
		t.Fatalf("while calls hung, a's other volume failed %d calls, b %d: %v %v", len(failsA), len(failsB), failsA, failsB)
	}
	t.Logf("plugin hangs: trials %d (%d calls × %d), every one ended by the %v call timeout in %s; "+
		"calls answered meanwhile: same plugin %d, other plugin %d, failed 0; restarts 0",
		hangs, len(faultOps)+1, faultTrials(), callTimeout, spread(took), okA, okB)
}

// spread is "min–max (n)" of ds.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	lo, hi := ds[0], ds[0]
	for _, d := range ds {
		lo, hi = min(lo, d), max(hi, d)
	}
	return fmt.Sprintf("%v–%v (%d)", lo.Round(time.Millisecond), hi.Round(time.Millisecond), len(ds))
}

// TestFaultPluginAnswersGarbage: what a plugin may not answer (a progress
// outside 0..100, a state that is no replication state, bytes that are no
// answer at all) fails that call with an error saying what was wrong, and
// a huge text (2 MiB: more than etcd takes in a request) reaches the
// daemon cut to maxPluginText, so the status recording it can be written.
// The plugin keeps running and serving its other volumes, the other
// plugin too.
func TestFaultPluginAnswersGarbage(t *testing.T) {
	r := startFaultRig(t, 30*time.Second)
	other := r.watch(r.b, "witness-b")
	same := r.watch(r.a, "witness-a")
	refused := []struct{ uuid, want string }{
		{"badprogress-1", `a progress of 250 % for volume badprogress-1 (not within 0..100)`},
		{"negprogress-1", `a progress of -7 % for volume negprogress-1 (not within 0..100)`},
		{"badstate-1", `an unknown replication state "mirroring"`},
		{"malformed-1", "failed to unmarshal"},
	}
	answers := 0
	for trial := range faultTrials() {
		for _, c := range refused {
			vol := r.a.vol(c.uuid)
			_, err := r.a.be.VolumeStatus(t.Context(), vol)
			answers++
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "plugin memstorage (a): VolumeStatus: ") {
				t.Fatalf("trial %d: VolumeStatus of %s = %v, want an error saying %q", trial, c.uuid, err, c.want)
			}
			if c.uuid == "malformed-1" {
				continue // VolumeStatuses carries the same request bytes
			}
			_, err = r.a.be.VolumeStatuses(t.Context(), r.a.env, []ports.Volume{same.vol, vol})
			answers++
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("trial %d: VolumeStatuses with %s = %v, want an error saying %q", trial, c.uuid, err, c.want)
			}
		}

		// Huge texts arrive cut, the answer otherwise intact.
		st, err := r.a.be.VolumeStatus(t.Context(), r.a.vol("hugedesc-1"))
		answers++
		if err != nil || st.State != ports.ReplicationFailed || len(st.Description) > maxPluginText ||
			!strings.HasPrefix(st.Description, "ddd") || !strings.HasSuffix(st.Description, "(2097152 bytes, cut)") {
			t.Fatalf("VolumeStatus with a 2 MiB description = %d bytes (%.40q…), %v; want failed, cut to %d bytes",
				len(st.Description), st.Description, err, maxPluginText)
		}
		reps, err := r.a.be.VolumeStatuses(t.Context(), r.a.env, []ports.Volume{r.a.vol("hugedesc-2")})
		answers++
		if err != nil || len(reps) != 1 || len(reps[0].Description) > maxPluginText {
			t.Fatalf("VolumeStatuses with a 2 MiB description = %v, want it cut to %d bytes", err, maxPluginText)
		}
		err = r.a.be.StartVolume(t.Context(), r.a.vol("hugeerr-1"))
		answers++
		if !errors.Is(err, ports.ErrPrecondition) || len(err.Error()) > maxPluginText+200 ||
			!strings.HasPrefix(err.Error(), "plugin memstorage (a): StartVolume: testplugin: eee") {
			t.Fatalf("StartVolume failing with a 2 MiB message = %d bytes, kinds ok %v; want ErrPrecondition cut to about %d bytes",
				len(err.Error()), errors.Is(err, ports.ErrPrecondition), maxPluginText)
		}
	}
	if st := status(t, r.host, r.a.path); st.State != StateRunning || st.Restarts != 0 {
		t.Fatalf("after garbage: %+v, want the plugin running, never restarted", st)
	}
	other.end()
	same.end()
	okA, failsA := same.counts()
	okB, failsB := other.counts()
	if len(failsA)+len(failsB) > 0 {
		t.Fatalf("beside the garbage, a's other volume failed %d calls, b %d: %v %v", len(failsA), len(failsB), failsA, failsB)
	}
	t.Logf("plugin answers garbage: %d bad answers over %d trials, each refused or cut with a clear error; "+
		"calls answered meanwhile: same plugin %d, other plugin %d, failed 0; restarts 0", answers, faultTrials(), okA, okB)
}
