package nfsfile_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/nfs/deltasync"
	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// agentProcess is the mirror-agent binary run as a process on a fixed
// port, so that a restarted agent is where the volume's record says.
type agentProcess struct {
	bin, dir, tokenFile string
	port                int
	cmd                 *exec.Cmd
}

func (a *agentProcess) start(t *testing.T) {
	t.Helper()
	a.cmd = exec.Command(a.bin, "-dir", a.dir, "-listen", "127.0.0.1:"+strconv.Itoa(a.port), "-token-file", a.tokenFile)
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start mirror-agent: %v", err)
	}
	waitFor(t, "mirror-agent to listen", func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(a.port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// kill kills the agent with SIGKILL, mid-whatever it does.
func (a *agentProcess) kill() {
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	_ = a.cmd.Wait()
}

// TestAgentKilledMidSync kills the agent process during the first copy
// and during a delta: the target never holds a partial or torn copy, and
// the next syncs, once the agent is back, converge.
func TestAgentKilledMidSync(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	bin := filepath.Join(dir, "mirror-agent")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/cdmdr/mirror/plugins/nfs/cmd/mirror-agent").CombinedOutput(); err != nil {
		t.Fatalf("build mirror-agent: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	src, tgt := t.TempDir(), t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte(plugintest.NewUUID()), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &agentProcess{bin: bin, dir: src, tokenFile: token, port: port}
	a.start(t)
	t.Cleanup(a.kill)

	const size = 64 << 20
	uuid := plugintest.NewUUID()
	name := "volume-" + uuid
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(src, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
	srcMeta, _ := json.Marshal(map[string]any{"agent_token_file": token})
	tgtMeta, _ := json.Marshal(map[string]any{"directory": tgt, "sync_interval": "1s"})
	env := sdk.Environment{ID: "storage.11.13",
		Source: sdk.Storage{ClusterID: 5, StorageID: 11, Type: "openstack.storage.type.nfs", Metadata: srcMeta},
		Target: sdk.Storage{ClusterID: 6, StorageID: 13, Type: "openstack.storage.type.nfs", Metadata: tgtMeta}}
	vol := sdk.Volume{Environment: env, ClusterID: 5, VolumeID: 7, VolumeUUID: uuid, SourceAgent: sdk.Agent{IP: "127.0.0.1", Port: uint16(port)}}
	b := newBackend(t)
	if err := b.PrepareEnvironment(ctx, env); err != nil {
		t.Fatal(err)
	}
	if err := b.StartVolume(ctx, vol); err != nil {
		t.Fatal(err)
	}

	// Killed during the first copy: no copy appears, not even a partial one.
	waitFor(t, "the first copy under way", func() bool {
		st, err := b.VolumeStatus(ctx, vol)
		return err == nil && st.State == sdk.ReplicationSyncing && st.Progress >= 10
	})
	a.kill()
	st, err := b.VolumeStatus(ctx, vol)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("agent killed at %d %% of the first copy", st.Progress)
	if st.Progress < 100 {
		if _, err := os.Stat(filepath.Join(tgt, name)); !os.IsNotExist(err) {
			t.Fatalf("a partial first copy appeared as the volume's copy: %v", err)
		}
	}
	a.start(t)
	want := sha256.Sum256(data)
	waitFor(t, "the first copy to finish once the agent is back", func() bool {
		got, err := os.ReadFile(filepath.Join(tgt, name))
		return err == nil && sha256.Sum256(got) == want
	})

	// Killed during a delta: once the copy is opened again (which
	// finishes or drops what the cut left), it holds the old sync or the
	// new one, nothing in between.
	old := want
	for i := 0; i < size; i += 2 << 20 { // half of the blocks change
		rand.Read(data[i : i+1<<20])
	}
	if err := os.WriteFile(filepath.Join(src, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
	want = sha256.Sum256(data)
	journal := filepath.Join(tgt, ".mirror", name, "journal")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(journal); err == nil {
			break // a delta is on its way
		}
		if time.Now().After(deadline) {
			t.Fatal("no delta began within 20 s")
		}
		time.Sleep(time.Millisecond)
	}
	a.kill()
	if err := b.ReleaseEnvironment(ctx, env); err != nil { // the loop ends: nothing applies now
		t.Fatal(err)
	}
	c, err := deltasync.Open(tgt, name, deltasync.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(tgt, name))
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	switch sha256.Sum256(got) {
	case old:
		t.Log("the cut delta left the copy at the previous sync")
	case want:
		t.Log("the delta was committed before the cut and applied")
	default:
		t.Fatal("after the agent was killed mid-delta, the copy is neither the previous sync nor the new one")
	}
	a.start(t)
	if err := b.PrepareEnvironment(ctx, env); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delta to arrive once the agent is back", func() bool {
		got, err := os.ReadFile(filepath.Join(tgt, name))
		return err == nil && sha256.Sum256(got) == want
	})
}
