package pluginhost

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdmdr/mirror/ports"
)

// TestVolumeStatuses: the bulk call reaches the plugin and comes back in
// order; its errors are mapped like any call's, a call past the call
// timeout fails as one, and an answer that is not one replication per
// volume, or a call asking about too many, is refused.
func TestVolumeStatuses(t *testing.T) {
	dir := t.TempDir()
	writePlugin(t, dir, "example", "-types="+exampleType)
	host := startHost(t, Config{Dir: dir, CallTimeout: 200 * time.Millisecond}, nil)
	be, err := host.For(t.Context(), exampleType)
	if err != nil {
		t.Fatal(err)
	}
	env, vol, _ := fixture(exampleType)
	other := vol
	other.VolumeUUID = "other-1"
	if err := be.PrepareEnvironment(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	if err := be.StartVolume(t.Context(), vol); err != nil {
		t.Fatal(err)
	}
	want := func(v ports.Volume) ports.VolumeReplication {
		rep, err := be.VolumeStatus(t.Context(), v)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	reps, err := be.VolumeStatuses(t.Context(), env, []ports.Volume{other, vol})
	if w := []ports.VolumeReplication{want(other), want(vol)}; err != nil || !slices.Equal(reps, w) {
		t.Fatalf("VolumeStatuses = %+v, %v; want %+v", reps, err, w)
	}

	call := func(uuid string) error {
		v := vol
		v.VolumeUUID = uuid
		_, err := be.VolumeStatuses(t.Context(), env, []ports.Volume{vol, v})
		return err
	}
	if err := call("notfound-1"); !errors.Is(err, ports.ErrNotFound) ||
		!strings.HasPrefix(err.Error(), "plugin memstorage (example): VolumeStatuses: testplugin: no pool") {
		t.Errorf("VolumeStatuses failing with ErrNotFound = %v, want ErrNotFound with the plugin's message", err)
	}
	begin := time.Now()
	if err := call("block-3"); !errors.Is(err, ports.ErrRetryable) || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "no answer within 200ms") {
		t.Errorf("VolumeStatuses past the call timeout = %v, want retryable and DeadlineExceeded", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("the call past the timeout took %v", d)
	}
	if err := call("short-1"); err == nil || !strings.Contains(err.Error(), "VolumeStatuses: answered 1 replications for 2 volumes") {
		t.Errorf("VolumeStatuses answering one volume short = %v, want it refused", err)
	}
	many := make([]ports.Volume, ports.MaxVolumeStatuses+1)
	for i := range many {
		many[i] = vol
	}
	if _, err := be.VolumeStatuses(t.Context(), env, many); err == nil || !strings.Contains(err.Error(), "at most 1000") {
		t.Errorf("VolumeStatuses of %d volumes = %v, want it refused", len(many), err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := be.VolumeStatuses(ctx, env, []ports.Volume{vol}); !errors.Is(err, context.Canceled) {
		t.Errorf("VolumeStatuses with a cancelled ctx = %v, want context.Canceled", err)
	}
}

// TestVolumeStatusesOldPlugin: a plugin built before VolumeStatuses
// existed answers it Unimplemented; the daemon gets its answer all the
// same, from one VolumeStatus per volume.
func TestVolumeStatusesOldPlugin(t *testing.T) {
	dir := t.TempDir()
	writePlugin(t, dir, "old", "-mode=old", "-types="+exampleType)
	rec := newLogRecorder()
	host := startHost(t, Config{Dir: dir}, slog.New(rec))
	be, err := host.For(t.Context(), exampleType)
	if err != nil {
		t.Fatal(err)
	}
	env, vol, _ := fixture(exampleType)
	other := vol
	other.VolumeUUID = "other-2"
	if err := be.PrepareEnvironment(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	if err := be.StartVolume(t.Context(), vol); err != nil {
		t.Fatal(err)
	}
	started, err := be.VolumeStatus(t.Context(), vol)
	if err != nil || started.State == ports.ReplicationAbsent {
		t.Fatalf("VolumeStatus after start = %+v, %v", started, err)
	}
	reps, err := be.VolumeStatuses(t.Context(), env, []ports.Volume{vol, other})
	if err != nil || len(reps) != 2 || reps[0].State != started.State || reps[1].State != ports.ReplicationAbsent {
		t.Fatalf("VolumeStatuses of a plugin without it = %+v, %v; want %s, then absent", reps, err, started.State)
	}
	eventually(t, "the plugin refusing VolumeStatuses", func() bool {
		return len(rec.find("testplugin has no VolumeStatuses")) == 1
	})
}
