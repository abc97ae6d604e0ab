package sdk

import (
	"context"

	"github.com/cdmdr/mirror/plugins/sdk/internal/pb"
)

// grpcServer serves a Backend: it converts, calls, and carries errors as
// status codes.
type grpcServer struct {
	pb.UnimplementedBackendServer
	impl Backend
}

var empty = &pb.Empty{}

func (s *grpcServer) Info(ctx context.Context, _ *pb.InfoRequest) (*pb.InfoResponse, error) {
	info, err := s.impl.Info(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return infoToPB(info), nil
}

func (s *grpcServer) PrepareEnvironment(ctx context.Context, r *pb.EnvironmentRequest) (*pb.Empty, error) {
	return empty, toStatus(s.impl.PrepareEnvironment(ctx, environmentFromPB(r.Environment)))
}

func (s *grpcServer) EnvironmentStatus(ctx context.Context, r *pb.EnvironmentRequest) (*pb.EnvironmentHealth, error) {
	h, err := s.impl.EnvironmentStatus(ctx, environmentFromPB(r.Environment))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.EnvironmentHealth{Ready: h.Ready, Description: h.Description, Unintended: h.Unintended}, nil
}

func (s *grpcServer) TeardownEnvironment(ctx context.Context, r *pb.TeardownRequest) (*pb.CleanupReport, error) {
	rep, err := s.impl.TeardownEnvironment(ctx, environmentFromPB(r.Environment), r.Force)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CleanupReport{Leftovers: rep.Leftovers}, nil
}

func (s *grpcServer) ReleaseEnvironment(ctx context.Context, r *pb.EnvironmentRequest) (*pb.Empty, error) {
	return empty, toStatus(s.impl.ReleaseEnvironment(ctx, environmentFromPB(r.Environment)))
}

func (s *grpcServer) StartVolume(ctx context.Context, r *pb.VolumeRequest) (*pb.Empty, error) {
	return empty, toStatus(s.impl.StartVolume(ctx, volumeFromPB(r.Volume)))
}

func (s *grpcServer) VolumeStatus(ctx context.Context, r *pb.VolumeRequest) (*pb.VolumeReplication, error) {
	rep, err := s.impl.VolumeStatus(ctx, volumeFromPB(r.Volume))
	if err != nil {
		return nil, toStatus(err)
	}
	return replicationToPB(rep), nil
}

func (s *grpcServer) VolumeStatuses(ctx context.Context, r *pb.VolumeStatusesRequest) (*pb.VolumeStatusesResponse, error) {
	env := environmentFromPB(r.Environment)
	vols := make([]Volume, len(r.Volumes))
	for i, v := range r.Volumes {
		vols[i] = volumeFromPB(v)
		vols[i].Environment = env // sent once, for all
	}
	reps, err := s.impl.VolumeStatuses(ctx, env, vols)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.VolumeStatusesResponse{Replications: make([]*pb.VolumeReplication, len(reps))}
	for i, rep := range reps {
		out.Replications[i] = replicationToPB(rep)
	}
	return out, nil
}

func (s *grpcServer) PauseVolume(ctx context.Context, r *pb.VolumeRequest) (*pb.Empty, error) {
	return empty, toStatus(s.impl.PauseVolume(ctx, volumeFromPB(r.Volume)))
}

func (s *grpcServer) ResumeVolume(ctx context.Context, r *pb.VolumeRequest) (*pb.Empty, error) {
	return empty, toStatus(s.impl.ResumeVolume(ctx, volumeFromPB(r.Volume)))
}

func (s *grpcServer) StopVolume(ctx context.Context, r *pb.VolumeRequest) (*pb.CleanupReport, error) {
	rep, err := s.impl.StopVolume(ctx, volumeFromPB(r.Volume))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CleanupReport{Leftovers: rep.Leftovers}, nil
}

func (s *grpcServer) DeleteTarget(ctx context.Context, r *pb.VolumeRequest) (*pb.Empty, error) {
	return empty, toStatus(s.impl.DeleteTarget(ctx, volumeFromPB(r.Volume)))
}

func (s *grpcServer) DestroyVolume(ctx context.Context, r *pb.VolumeRequest) (*pb.CleanupReport, error) {
	rep, err := s.impl.DestroyVolume(ctx, volumeFromPB(r.Volume))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CleanupReport{Leftovers: rep.Leftovers}, nil
}

func (s *grpcServer) AddSnapshot(ctx context.Context, r *pb.SnapshotRequest) (*pb.Empty, error) {
	return empty, toStatus(s.impl.AddSnapshot(ctx, snapshotFromPB(r.Snapshot)))
}

func (s *grpcServer) RemoveSnapshot(ctx context.Context, r *pb.SnapshotRequest) (*pb.Empty, error) {
	return empty, toStatus(s.impl.RemoveSnapshot(ctx, snapshotFromPB(r.Snapshot)))
}

func (s *grpcServer) SnapshotStatus(ctx context.Context, r *pb.SnapshotRequest) (*pb.SnapshotReplication, error) {
	rep, err := s.impl.SnapshotStatus(ctx, snapshotFromPB(r.Snapshot))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SnapshotReplication{State: string(rep.State), Description: rep.Description}, nil
}

func (s *grpcServer) FindLeftovers(ctx context.Context, r *pb.LeftoverQuery) (*pb.LeftoverList, error) {
	list, err := s.impl.FindLeftovers(ctx, leftoverQueryFromPB(r))
	if err != nil {
		return nil, toStatus(err)
	}
	return leftoversToPB(list), nil
}
