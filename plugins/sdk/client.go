package sdk

import (
	"context"
	"fmt"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cdmdr/mirror/plugins/sdk/internal/pb"
)

// grpcClient is a Backend that calls a plugin over gRPC.
type grpcClient struct {
	c pb.BackendClient
	// oneByOne: the plugin answered VolumeStatuses codes.Unimplemented
	// (built before the call existed), so ask VolumeStatus of each volume.
	oneByOne atomic.Bool
}

var _ Backend = (*grpcClient)(nil)

// NewGRPCClient returns a Backend calling the plugin service on conn.
// Errors come back as *RemoteError wrapping the SDK error their status
// stands for.
func NewGRPCClient(conn grpc.ClientConnInterface) Backend {
	return &grpcClient{c: pb.NewBackendClient(conn)}
}

func (g *grpcClient) Info(ctx context.Context) (Info, error) {
	r, err := g.c.Info(ctx, &pb.InfoRequest{})
	if err != nil {
		return Info{}, fromStatus(err)
	}
	return infoFromPB(r), nil
}

func (g *grpcClient) PrepareEnvironment(ctx context.Context, env Environment) error {
	_, err := g.c.PrepareEnvironment(ctx, &pb.EnvironmentRequest{Environment: environmentToPB(env)})
	return fromStatus(err)
}

func (g *grpcClient) EnvironmentStatus(ctx context.Context, env Environment) (EnvironmentHealth, error) {
	r, err := g.c.EnvironmentStatus(ctx, &pb.EnvironmentRequest{Environment: environmentToPB(env)})
	if err != nil {
		return EnvironmentHealth{}, fromStatus(err)
	}
	return EnvironmentHealth{Ready: r.Ready, Description: r.Description, Unintended: r.Unintended}, nil
}

func (g *grpcClient) TeardownEnvironment(ctx context.Context, env Environment, force bool) (CleanupReport, error) {
	r, err := g.c.TeardownEnvironment(ctx, &pb.TeardownRequest{Environment: environmentToPB(env), Force: force})
	if err != nil {
		return CleanupReport{}, fromStatus(err)
	}
	return CleanupReport{Leftovers: r.Leftovers}, nil
}

// ReleaseEnvironment is a no-op for a plugin built before it existed
// (codes.Unimplemented): such a plugin runs nothing it must stop.
func (g *grpcClient) ReleaseEnvironment(ctx context.Context, env Environment) error {
	_, err := g.c.ReleaseEnvironment(ctx, &pb.EnvironmentRequest{Environment: environmentToPB(env)})
	if status.Code(err) == codes.Unimplemented {
		return nil
	}
	return fromStatus(err)
}

func (g *grpcClient) StartVolume(ctx context.Context, vol Volume) error {
	_, err := g.c.StartVolume(ctx, &pb.VolumeRequest{Volume: volumeToPB(vol)})
	return fromStatus(err)
}

func (g *grpcClient) VolumeStatus(ctx context.Context, vol Volume) (VolumeReplication, error) {
	r, err := g.c.VolumeStatus(ctx, &pb.VolumeRequest{Volume: volumeToPB(vol)})
	if err != nil {
		return VolumeReplication{}, fromStatus(err)
	}
	return replicationFromPB(r), nil
}

// VolumeStatuses sends the environment once and the volumes without it.
// A plugin built before the call existed answers codes.Unimplemented; it
// is then asked VolumeStatus of each volume, now and from then on.
func (g *grpcClient) VolumeStatuses(ctx context.Context, env Environment, vols []Volume) ([]VolumeReplication, error) {
	if g.oneByOne.Load() {
		return VolumeStatusesOneByOne(ctx, g, env, vols)
	}
	req := &pb.VolumeStatusesRequest{Environment: environmentToPB(env), Volumes: make([]*pb.Volume, len(vols))}
	for i, v := range vols {
		req.Volumes[i] = volumeRefToPB(v)
	}
	r, err := g.c.VolumeStatuses(ctx, req)
	if status.Code(err) == codes.Unimplemented {
		g.oneByOne.Store(true)
		return VolumeStatusesOneByOne(ctx, g, env, vols)
	}
	if err != nil {
		return nil, fromStatus(err)
	}
	reps := make([]VolumeReplication, len(r.Replications))
	for i, rep := range r.Replications {
		reps[i] = replicationFromPB(rep)
	}
	return reps, nil
}

func (g *grpcClient) PauseVolume(ctx context.Context, vol Volume) error {
	_, err := g.c.PauseVolume(ctx, &pb.VolumeRequest{Volume: volumeToPB(vol)})
	return fromStatus(err)
}

func (g *grpcClient) ResumeVolume(ctx context.Context, vol Volume) error {
	_, err := g.c.ResumeVolume(ctx, &pb.VolumeRequest{Volume: volumeToPB(vol)})
	return fromStatus(err)
}

func (g *grpcClient) StopVolume(ctx context.Context, vol Volume) (CleanupReport, error) {
	r, err := g.c.StopVolume(ctx, &pb.VolumeRequest{Volume: volumeToPB(vol)})
	if err != nil {
		return CleanupReport{}, fromStatus(err)
	}
	return CleanupReport{Leftovers: r.Leftovers}, nil
}

func (g *grpcClient) DeleteTarget(ctx context.Context, vol Volume) error {
	_, err := g.c.DeleteTarget(ctx, &pb.VolumeRequest{Volume: volumeToPB(vol)})
	return fromStatus(err)
}

func (g *grpcClient) DestroyVolume(ctx context.Context, vol Volume) (CleanupReport, error) {
	r, err := g.c.DestroyVolume(ctx, &pb.VolumeRequest{Volume: volumeToPB(vol)})
	if err != nil {
		return CleanupReport{}, fromStatus(err)
	}
	return CleanupReport{Leftovers: r.Leftovers}, nil
}

// FindLeftovers of a plugin built before the call existed
// (codes.Unimplemented) is an ErrPrecondition saying so: it cannot tell
// what it left.
func (g *grpcClient) FindLeftovers(ctx context.Context, q LeftoverQuery) ([]Leftover, error) {
	r, err := g.c.FindLeftovers(ctx, leftoverQueryToPB(q))
	if status.Code(err) == codes.Unimplemented {
		return nil, fmt.Errorf("the plugin predates FindLeftovers and cannot list what it left; upgrade it: %w", ErrPrecondition)
	}
	if err != nil {
		return nil, fromStatus(err)
	}
	return leftoversFromPB(r), nil
}

func (g *grpcClient) AddSnapshot(ctx context.Context, snap Snapshot) error {
	_, err := g.c.AddSnapshot(ctx, &pb.SnapshotRequest{Snapshot: snapshotToPB(snap)})
	return fromStatus(err)
}

func (g *grpcClient) RemoveSnapshot(ctx context.Context, snap Snapshot) error {
	_, err := g.c.RemoveSnapshot(ctx, &pb.SnapshotRequest{Snapshot: snapshotToPB(snap)})
	return fromStatus(err)
}

func (g *grpcClient) SnapshotStatus(ctx context.Context, snap Snapshot) (SnapshotReplication, error) {
	r, err := g.c.SnapshotStatus(ctx, &pb.SnapshotRequest{Snapshot: snapshotToPB(snap)})
	if err != nil {
		return SnapshotReplication{}, fromStatus(err)
	}
	return SnapshotReplication{State: SnapshotState(r.State), Description: r.Description}, nil
}
