package main

import (
	"context"
	"errors"
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
// plus faults a test steers per volume.
//
// Hangs, one shot: a file DIR/<Method>-<volume UUID> (StartVolume,
// PauseVolume, ResumeVolume, StopVolume, DestroyVolume, VolumeStatus) makes
// that call remove it, log "testplugin hanging" and answer only when its
// context ends; so a test can kill the process during the call, or watch
// the host's call timeout end it, and the retry after is served.
//
// Garbage, by the volume's UUID prefix, in VolumeStatus and VolumeStatuses:
// "badprogress-" syncing at 250 %, "negprogress-" at -7 %, "badstate-" a
// state no plugin may report ("mirroring" is the daemon's word), "hugedesc-"
// a failed replication described in 2 MiB. StartVolume of "hugeerr-"
// fails with a 2 MiB message; any call about "malformed-" is answered
// with bytes that are no VolumeReplication (see malformed).
type faulty struct {
	blocking
	dir string
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
	return f.blocking.StartVolume(ctx, vol)
}

func (f faulty) PauseVolume(ctx context.Context, vol sdk.Volume) error {
	if err := f.hang(ctx, "PauseVolume", vol.VolumeUUID); err != nil {
		return err
	}
	return f.blocking.PauseVolume(ctx, vol)
}

func (f faulty) ResumeVolume(ctx context.Context, vol sdk.Volume) error {
	if err := f.hang(ctx, "ResumeVolume", vol.VolumeUUID); err != nil {
		return err
	}
	return f.blocking.ResumeVolume(ctx, vol)
}

func (f faulty) StopVolume(ctx context.Context, vol sdk.Volume) (sdk.CleanupReport, error) {
	if err := f.hang(ctx, "StopVolume", vol.VolumeUUID); err != nil {
		return sdk.CleanupReport{}, err
	}
	return f.blocking.StopVolume(ctx, vol)
}

func (f faulty) DestroyVolume(ctx context.Context, vol sdk.Volume) (sdk.CleanupReport, error) {
	if err := f.hang(ctx, "DestroyVolume", vol.VolumeUUID); err != nil {
		return sdk.CleanupReport{}, err
	}
	return f.blocking.DestroyVolume(ctx, vol)
}

func (f faulty) VolumeStatus(ctx context.Context, vol sdk.Volume) (sdk.VolumeReplication, error) {
	if err := f.hang(ctx, "VolumeStatus", vol.VolumeUUID); err != nil {
		return sdk.VolumeReplication{}, err
	}
	rep, err := f.blocking.VolumeStatus(ctx, vol)
	if err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return rep, err
	}
	return garbage(vol.VolumeUUID, rep), nil
}

func (f faulty) VolumeStatuses(ctx context.Context, env sdk.Environment, vols []sdk.Volume) ([]sdk.VolumeReplication, error) {
	reps, err := f.blocking.VolumeStatuses(ctx, env, vols)
	if err != nil {
		return reps, err
	}
	for i := range reps {
		reps[i] = garbage(vols[i].VolumeUUID, reps[i])
	}
	return reps, nil
}

// garbage is what the plugin answers instead of rep for a volume whose
// UUID asks for it.
func garbage(volumeUUID string, rep sdk.VolumeReplication) sdk.VolumeReplication {
	switch {
	case strings.HasPrefix(volumeUUID, "badprogress-"):
		return sdk.VolumeReplication{State: sdk.ReplicationSyncing, TargetExists: true, Progress: 250}
	case strings.HasPrefix(volumeUUID, "negprogress-"):
		return sdk.VolumeReplication{State: sdk.ReplicationSyncing, TargetExists: true, Progress: -7}
	case strings.HasPrefix(volumeUUID, "badstate-"):
		return sdk.VolumeReplication{State: "mirroring", TargetExists: true}
	case strings.HasPrefix(volumeUUID, "hugedesc-"):
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

// serveFaulty serves f as sdk.Serve does, with malformed answers.
func serveFaulty(f faulty) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.PluginSets(f),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.ChainUnaryInterceptor(malformed))...)
		},
	})
}
