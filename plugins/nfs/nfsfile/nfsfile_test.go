package nfsfile_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rig is one environment and volume over a site, for the tests below.
type rig struct {
	s   *site
	env sdk.Environment
	vol sdk.Volume
}

func newRig(t *testing.T, size int) *rig {
	t.Helper()
	s := newSite(t)
	r := &rig{s: s, env: s.environment(t, "1s")}
	uuid := plugintest.NewUUID()
	s.writeVolume(t, uuid, size)
	r.vol = sdk.Volume{Environment: r.env, ClusterID: 5, VolumeID: 7, VolumeUUID: uuid, SourceAgent: s.agentAddr(t)}
	return r
}

func (r *rig) srcPath() string { return filepath.Join(r.s.srcDir, "volume-"+r.vol.VolumeUUID) }
func (r *rig) tgtPath() string { return filepath.Join(r.s.tgtDir, "volume-"+r.vol.VolumeUUID) }

func sum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// waitFor polls cond every 20 ms until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// synced waits until the target equals the source, byte for byte.
func (r *rig) synced(t *testing.T, b sdk.Backend, what string) {
	t.Helper()
	want := sum(t, r.srcPath())
	waitFor(t, what, func() bool {
		st, err := b.VolumeStatus(t.Context(), r.vol)
		if err != nil || st.State != sdk.ReplicationReplaying {
			return false
		}
		got, err := os.ReadFile(r.tgtPath())
		return err == nil && sha256.Sum256(got) == want
	})
}

// replicate prepares the environment on b, starts the volume and waits
// for its first copy.
func (r *rig) replicate(t *testing.T, b sdk.Backend) {
	t.Helper()
	if err := b.PrepareEnvironment(t.Context(), r.env); err != nil {
		t.Fatal(err)
	}
	if err := b.StartVolume(t.Context(), r.vol); err != nil {
		t.Fatal(err)
	}
	r.synced(t, b, "the first copy")
}

// TestDeltaCrossesTheWire: after the first copy, a change of a few
// blocks on the source reaches the target, and only those blocks are
// served by the agent.
func TestDeltaCrossesTheWire(t *testing.T) {
	r := newRig(t, 16<<20)
	b := newBackend(t)
	r.replicate(t, b)

	before := r.s.agent.Stats()
	f, err := os.OpenFile(r.srcPath(), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	change := bytes.Repeat([]byte{0xa5}, 100)
	for _, off := range []int64{0, 5 << 20, 15<<20 + 7} { // three 64 KiB blocks
		if _, err := f.WriteAt(change, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	r.synced(t, b, "the change replicated")
	served := r.s.agent.Stats().BytesServed - before.BytesServed
	// Three blocks of 64 KiB, and nothing else, crossed as data: a sync
	// that changed nothing sends none.
	if served != 3*64<<10 {
		t.Fatalf("the agent served %d bytes of block data for a change of 3 blocks; want %d", served, 3*64<<10)
	}
}

// TestTakeoverByAnotherHost: a second host's plugin, sharing the target
// directory, takes the volume over once the first releases it, and
// never syncs it while the first holds it.
func TestTakeoverByAnotherHost(t *testing.T) {
	ctx := t.Context()
	r := newRig(t, 4<<20)
	a, b := newBackend(t), newBackend(t)
	r.replicate(t, a)

	// Host b prepares while host a still syncs: b's loop cannot take the
	// copy's lock, so it copies nothing.
	if err := b.PrepareEnvironment(ctx, r.env); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "host b to report the copy in use", func() bool {
		st, err := b.VolumeStatus(ctx, r.vol)
		return err == nil && strings.Contains(st.Description, "in use")
	})

	// a releases (its lead ended): b takes over and syncs a change.
	if err := a.ReleaseEnvironment(ctx, r.env); err != nil {
		t.Fatal(err)
	}
	// A call that reaches host a late, after the hand-over, must not
	// start there again what it released.
	if err := a.StartVolume(ctx, r.vol); err != nil {
		t.Fatal(err)
	}
	if h, err := a.EnvironmentStatus(ctx, r.env); err != nil || h.Ready {
		t.Fatalf("host a after its release and a late StartVolume: %+v, %v; want not ready (it syncs nothing)", h, err)
	}
	if err := os.WriteFile(r.srcPath(), bytes.Repeat([]byte{7}, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	r.synced(t, b, "host b's sync after the takeover")
	if h, err := b.EnvironmentStatus(ctx, r.env); err != nil || !h.Ready {
		t.Fatalf("host b after the takeover: %+v, %v; want ready", h, err)
	}
}

// TestRecoveryPoint: a snapshot becomes a copy of the volume as synced
// after it was asked for, which later syncs leave alone.
func TestRecoveryPoint(t *testing.T) {
	ctx := t.Context()
	r := newRig(t, 4<<20)
	b := newBackend(t)
	r.replicate(t, b)
	snapUUID := plugintest.NewUUID()
	snap := sdk.Snapshot{Volume: r.vol, SnapshotID: 3, SnapshotUUID: snapUUID}
	if err := b.AddSnapshot(ctx, snap); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("AddSnapshot without the snapshot's file on the source: %v; want ErrNotFound", err)
	}
	if err := os.WriteFile(filepath.Join(r.s.srcDir, "volume-"+r.vol.VolumeUUID+"."+snapUUID), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	at := sum(t, r.srcPath())
	if err := b.AddSnapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the recovery point", func() bool {
		st, err := b.SnapshotStatus(ctx, snap)
		return err == nil && st.State == sdk.SnapshotReady
	})
	point := filepath.Join(r.s.tgtDir, "volume-"+r.vol.VolumeUUID+".snapshot-"+snapUUID)
	if sum(t, point) != at {
		t.Fatal("the recovery point is not the volume as it was when the snapshot was taken")
	}
	if err := os.WriteFile(r.srcPath(), bytes.Repeat([]byte{9}, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	r.synced(t, b, "a change after the snapshot")
	if sum(t, point) != at {
		t.Fatal("a later sync changed the recovery point")
	}
	if err := b.RemoveSnapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(point); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("RemoveSnapshot left the recovery point: %v", err)
	}
}

// TestBadMetadata: unusable metadata is a clear error naming the field,
// never quoting a secret.
func TestBadMetadata(t *testing.T) {
	ctx := t.Context()
	const secret = "s3cret-agent-token"
	r := newRig(t, 1<<20)
	b := newBackend(t)
	loose := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(loose, []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	meta := func(m map[string]any) json.RawMessage { data, _ := json.Marshal(m); return data }
	cases := []struct {
		name     string
		src, tgt json.RawMessage
		says     string
	}{
		{"relative directory", nil, meta(map[string]any{"directory": "volumes"}), "directory must be an absolute path"},
		{"short interval", nil, meta(map[string]any{"directory": r.s.tgtDir, "sync_interval": "10ms"}), "sync_interval"},
		{"odd block size", nil, meta(map[string]any{"directory": r.s.tgtDir, "block_size": 1000}), "block_size"},
		{"not JSON", nil, json.RawMessage(`{"directory": "` + secret), "not the JSON object"},
		{"token file others read", meta(map[string]any{"agent_token_file": loose}), nil, "readable by others"},
		{"no token", meta(map[string]any{"agent_token_file": ""}), nil, "names no agent token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vol := r.vol
			if c.src != nil {
				vol.Environment.Source.Metadata = c.src
			}
			if c.tgt != nil {
				vol.Environment.Target.Metadata = c.tgt
			}
			if c.src != nil {
				if err := b.PrepareEnvironment(ctx, vol.Environment); err != nil {
					t.Fatal(err)
				}
			}
			err := b.StartVolume(ctx, vol)
			if err == nil || !strings.Contains(err.Error(), c.says) || !errors.Is(err, sdk.ErrPrecondition) {
				t.Fatalf("StartVolume: %v; want ErrPrecondition saying %q", err, c.says)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error quotes the secret: %v", err)
			}
		})
	}
}

// TestNoAgent: a volume whose record names no agent cannot start, and
// says why.
func TestNoAgent(t *testing.T) {
	r := newRig(t, 1<<20)
	b := newBackend(t)
	if err := b.PrepareEnvironment(t.Context(), r.env); err != nil {
		t.Fatal(err)
	}
	vol := r.vol
	vol.SourceAgent = sdk.Agent{}
	err := b.StartVolume(t.Context(), vol)
	if !errors.Is(err, sdk.ErrPrecondition) || !strings.Contains(err.Error(), "source_agent") {
		t.Fatalf("StartVolume without an agent: %v; want ErrPrecondition naming source_agent", err)
	}
}
