package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// faulty is the plugin of the host's fault tests (-faults DIR): blocking,
// plus faults a test steers per volume, on a storage that outlives the
// process (DIR/journal, see journal).
//
// Hangs, one shot: a file DIR/<Method>-<volume UUID> (StartVolume,
// PauseVolume, ResumeVolume, StopVolume, DestroyVolume, VolumeStatus) makes
// that call remove it, log "testplugin hanging" and answer only when its
// context ends; so a test can kill the process during the call, or watch
// the host's call timeout end it, and the retry after is served.
//
// Garbage, by the volume's UUID prefix, or the kind written in a file
// DIR/garbage-<volume UUID> (the daemon takes only real UUIDs), in
// VolumeStatus and VolumeStatuses: "badprogress" syncing at 250 %,
// "negprogress" at -7 %, "badstate" a state no plugin may report
// ("mirroring" is the daemon's word), "hugedesc" a failed replication
// described in 2 MiB. StartVolume of "hugeerr-" fails with a 2 MiB
// message; any call about "malformed-" is answered with bytes that are no
// VolumeReplication (see malformed).
type faulty struct {
	blocking
	dir     string
	journal *journal
}

// hugeLen is more than etcd takes in one request (1.5 MiB by default) and
// less than gRPC's 4 MiB message limit: what a plugin can send, and no
// status can hold.
const hugeLen = 2 << 20

// hang blocks the call when the test armed it.
func (f faulty) hang(ctx context.Context, method, volumeUUID string) error {
	path := filepath.Join(f.dir, method+"-"+volumeUUID)
	if err := os.Remove(path); err != nil {
		return nil // not armed
	}
	sdk.Logger().Info("testplugin hanging", "method", method, "volume_uuid", volumeUUID)
	<-ctx.Done()
	return ctx.Err()
}

func (f faulty) StartVolume(ctx context.Context, vol sdk.Volume) error {
	if err := f.hang(ctx, "StartVolume", vol.VolumeUUID); err != nil {
		return err
	}
	if strings.HasPrefix(vol.VolumeUUID, "hugeerr-") {
		return fmt.Errorf("testplugin: %s: %w", strings.Repeat("e", hugeLen), sdk.ErrPrecondition)
	}
	return f.journal.record(entry{Method: "StartVolume", Vol: &vol}, f.blocking.StartVolume(ctx, vol))
}

func (f faulty) PauseVolume(ctx context.Context, vol sdk.Volume) error {
	if err := f.hang(ctx, "PauseVolume", vol.VolumeUUID); err != nil {
		return err
	}
	return f.journal.record(entry{Method: "PauseVolume", Vol: &vol}, f.blocking.PauseVolume(ctx, vol))
}

func (f faulty) ResumeVolume(ctx context.Context, vol sdk.Volume) error {
	if err := f.hang(ctx, "ResumeVolume", vol.VolumeUUID); err != nil {
		return err
	}
	return f.journal.record(entry{Method: "ResumeVolume", Vol: &vol}, f.blocking.ResumeVolume(ctx, vol))
}

func (f faulty) StopVolume(ctx context.Context, vol sdk.Volume) (sdk.CleanupReport, error) {
	if err := f.hang(ctx, "StopVolume", vol.VolumeUUID); err != nil {
		return sdk.CleanupReport{}, err
	}
	rep, err := f.blocking.StopVolume(ctx, vol)
	return rep, f.journal.record(entry{Method: "StopVolume", Vol: &vol}, err)
}

func (f faulty) DestroyVolume(ctx context.Context, vol sdk.Volume) (sdk.CleanupReport, error) {
	if err := f.hang(ctx, "DestroyVolume", vol.VolumeUUID); err != nil {
		return sdk.CleanupReport{}, err
	}
	rep, err := f.blocking.DestroyVolume(ctx, vol)
	return rep, f.journal.record(entry{Method: "DestroyVolume", Vol: &vol}, err)
}

func (f faulty) PrepareEnvironment(ctx context.Context, env sdk.Environment) error {
	return f.journal.record(entry{Method: "PrepareEnvironment", Env: &env}, f.blocking.PrepareEnvironment(ctx, env))
}

func (f faulty) TeardownEnvironment(ctx context.Context, env sdk.Environment, force bool) (sdk.CleanupReport, error) {
	rep, err := f.blocking.TeardownEnvironment(ctx, env, force)
	return rep, f.journal.record(entry{Method: "TeardownEnvironment", Env: &env, Force: force}, err)
}

func (f faulty) DeleteTarget(ctx context.Context, vol sdk.Volume) error {
	return f.journal.record(entry{Method: "DeleteTarget", Vol: &vol}, f.blocking.DeleteTarget(ctx, vol))
}

func (f faulty) VolumeStatus(ctx context.Context, vol sdk.Volume) (sdk.VolumeReplication, error) {
	if err := f.hang(ctx, "VolumeStatus", vol.VolumeUUID); err != nil {
		return sdk.VolumeReplication{}, err
	}
	rep, err := f.blocking.VolumeStatus(ctx, vol)
	if err != nil {
		return rep, err
	}
	return garbage(f.garbageKind(vol.VolumeUUID), rep), nil
}

func (f faulty) VolumeStatuses(ctx context.Context, env sdk.Environment, vols []sdk.Volume) ([]sdk.VolumeReplication, error) {
	reps, err := f.blocking.VolumeStatuses(ctx, env, vols)
	if err != nil {
		return reps, err
	}
	for i := range reps {
		reps[i] = garbage(f.garbageKind(vols[i].VolumeUUID), reps[i])
	}
	return reps, nil
}

// garbageKind is the garbage asked for the volume, "" for none.
func (f faulty) garbageKind(volumeUUID string) string {
	if b, err := os.ReadFile(filepath.Join(f.dir, "garbage-"+volumeUUID)); err == nil {
		return strings.TrimSpace(string(b))
	}
	kind, _, _ := strings.Cut(volumeUUID, "-")
	return kind
}

// garbage is what the plugin answers instead of rep for that kind.
func garbage(kind string, rep sdk.VolumeReplication) sdk.VolumeReplication {
	switch kind {
	case "badprogress":
		return sdk.VolumeReplication{State: sdk.ReplicationSyncing, TargetExists: true, Progress: 250}
	case "negprogress":
		return sdk.VolumeReplication{State: sdk.ReplicationSyncing, TargetExists: true, Progress: -7}
	case "badstate":
		return sdk.VolumeReplication{State: "mirroring", TargetExists: true}
	case "hugedesc":
		return sdk.VolumeReplication{State: sdk.ReplicationFailed, TargetExists: true, Description: strings.Repeat("d", hugeLen)}
	}
	return rep
}

// malformed answers any call whose request names a "malformed-" volume
// with a message of another type, whose field 1 holds bytes that are not
// UTF-8: the host's gRPC client cannot decode it as the answer it waits for.
func malformed(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if strings.Contains(fmt.Sprint(req), "malformed-") {
		return wrapperspb.Bytes([]byte{0xff, 0xfe, 0x00, 0xc3}), nil
	}
	return handler(ctx, req)
}

// serveFaulty serves f as sdk.Serve does, with malformed answers, once
// its journal is replayed.
func serveFaulty(f faulty) {
	if err := f.journal.replay(f.blocking); err != nil {
		fmt.Fprintln(os.Stderr, "testplugin:", err)
		os.Exit(1)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.PluginSets(f),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.ChainUnaryInterceptor(malformed))...)
		},
	})
}
