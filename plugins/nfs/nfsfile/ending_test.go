package nfsfile_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// mirrord's environment poll runs beside a volume's stop_and_delete or
// stop: it finds the volume's loop stopped, calls PrepareEnvironment
// again, and that must not restart the loop under DeleteTarget or
// StopVolume, which would then find the copy locked by it (seen in
// `make demo`: "the volume's copy is in use by another process").
func TestPrepareDoesNotRestartAnEndingVolume(t *testing.T) {
	ends := map[string]func(sdk.Backend, context.Context, sdk.Volume) error{
		"DeleteTarget": func(b sdk.Backend, ctx context.Context, v sdk.Volume) error { return b.DeleteTarget(ctx, v) },
		"StopVolume": func(b sdk.Backend, ctx context.Context, v sdk.Volume) error {
			_, err := b.StopVolume(ctx, v)
			return err
		},
		// Destroy reports what it could not delete as leftovers.
		"DestroyVolume": func(b sdk.Backend, ctx context.Context, v sdk.Volume) error {
			rep, err := b.DestroyVolume(ctx, v)
			if err == nil && len(rep.Leftovers) > 0 {
				err = fmt.Errorf("leftovers: %v", rep.Leftovers)
			}
			return err
		},
	}
	for name, end := range ends {
		t.Run(name, func(t *testing.T) {
			// The race is a window of a few file operations: try it a few times.
			for i := range 4 {
				ctx := t.Context()
				s := newSite(t)
				env := s.environment(t, "1s")
				be := newBackend(t)
				uuid := plugintest.NewUUID()
				s.writeVolume(t, uuid, 1<<20)
				vol := sdk.Volume{Environment: env, ClusterID: 5, VolumeID: 7, VolumeUUID: uuid, SourceAgent: s.agentAddr(t)}
				if err := be.PrepareEnvironment(ctx, env); err != nil {
					t.Fatal(err)
				}
				if err := be.StartVolume(ctx, vol); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(10 * time.Second)
				for {
					st, err := be.VolumeStatus(ctx, vol)
					if err != nil {
						t.Fatal(err)
					}
					if st.TargetExists {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("no complete copy after 10 s: %+v", st)
					}
					time.Sleep(10 * time.Millisecond)
				}
				// A recovery point makes the delete longer (its file is
				// removed and the directory synced first): a wider window.
				snap := sdk.Snapshot{Volume: vol, SnapshotID: 21, SnapshotUUID: plugintest.NewUUID()}
				if err := os.WriteFile(filepath.Join(s.srcDir, "volume-"+uuid+"."+snap.SnapshotUUID), nil, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := be.AddSnapshot(ctx, snap); err != nil {
					t.Fatal(err)
				}
				point := filepath.Join(s.tgtDir, "volume-"+uuid+".snapshot-"+snap.SnapshotUUID)
				for {
					if _, err := os.Stat(point); err == nil {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("no recovery point after 10 s")
					}
					time.Sleep(10 * time.Millisecond)
				}
				stop, done := make(chan struct{}), make(chan struct{})
				go func() {
					defer close(done)
					for {
						select {
						case <-stop:
							return
						default:
						}
						_ = be.PrepareEnvironment(ctx, env)
					}
				}()
				err := end(be, ctx, vol)
				close(stop)
				<-done
				if err != nil {
					t.Fatalf("try %d: %s beside PrepareEnvironment: %v", i, name, err)
				}
			}
		})
	}
}
