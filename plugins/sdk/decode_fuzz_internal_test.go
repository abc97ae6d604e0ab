package sdk

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cdmdr/mirror/plugins/sdk/internal/pb"
)

// Fuzz targets for the SDK's decoders of what crosses the plugin
// boundary: protobuf messages as bytes, turned into the SDK's types and
// back, and gRPC statuses turned into errors. What decodes must convert
// back to the same value; nothing may panic.

func FuzzReplicationFromPB(f *testing.F) {
	for _, r := range []*pb.VolumeReplication{
		{State: "replaying", TargetExists: true, Progress: 100, LastSyncTimeUnixNano: 1714521600123456789, Lag: "12 entries"},
		{State: "syncing", Progress: 42, Description: "first copy", KeptName: "image volumes/volume-7f3a.kept", KeptTakenUnixNano: -1},
		{State: "error", Progress: -7, LastSyncTimeUnixNano: -9223372036854775808},
		{},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m pb.VolumeReplication
		if err := proto.Unmarshal(data, &m); err != nil {
			return // refused by the protobuf runtime, with its error
		}
		r := replicationFromPB(&m)
		if again := replicationFromPB(replicationToPB(r)); !reflect.DeepEqual(again, r) {
			t.Fatalf("round trip of %+v = %+v", r, again)
		}
		if n := m.GetLastSyncTimeUnixNano(); n != 0 && r.LastSyncTime.UnixNano() != n {
			t.Fatalf("last sync %d read as %v", n, r.LastSyncTime)
		}
	})
}

func FuzzSnapshotFromPB(f *testing.F) {
	vol := &pb.Volume{ClusterId: 5, VolumeId: 7, VolumeUuid: "bae4c30d-3119-4870-807e-0e1a9fcbf185",
		SourceAgent: &pb.Agent{Ip: "192.168.137.101", Port: 8080},
		Environment: &pb.Environment{Id: "storage.11.13",
			Source: &pb.Storage{ClusterId: 5, StorageId: 11, Type: "openstack.storage.type.ceph", BackendName: "ceph", Metadata: []byte(`{"pool":"volumes"}`)},
			Target: &pb.Storage{ClusterId: 6, StorageId: 13, Type: "openstack.storage.type.ceph"}}}
	for _, s := range []*pb.Snapshot{
		{Volume: vol, SnapshotId: 21, SnapshotUuid: "6f1c2a9e-0d4b-4c7e-9a51-3b8f2e7d1c04", SnapshotName: "daily-2024-05-01"},
		{Volume: &pb.Volume{SourceAgent: &pb.Agent{Port: 65536}}},
		{},
	} {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m pb.Snapshot
		if err := proto.Unmarshal(data, &m); err != nil {
			return
		}
		s := snapshotFromPB(&m)
		if again := snapshotFromPB(snapshotToPB(s)); !reflect.DeepEqual(normalize(again), normalize(s)) {
			t.Fatalf("round trip of %+v = %+v", s, again)
		}
		if a := m.GetVolume().GetSourceAgent(); a.GetPort() <= 65535 && uint32(s.Volume.SourceAgent.Port) != a.GetPort() {
			t.Fatalf("agent port %d read as %d", a.GetPort(), s.Volume.SourceAgent.Port)
		}
	})
}

// normalize makes empty metadata nil: protobuf does not tell the two apart.
func normalize(s Snapshot) Snapshot {
	for _, st := range []*Storage{&s.Volume.Environment.Source, &s.Volume.Environment.Target} {
		if len(st.Metadata) == 0 {
			st.Metadata = nil
		}
	}
	return s
}

// FuzzFromStatus checks that an error keeps its message and its kind
// (errors.Is) across the plugin boundary, whatever the code and message.
func FuzzFromStatus(f *testing.F) {
	for _, c := range []codes.Code{codes.NotFound, codes.FailedPrecondition, codes.Aborted, codes.Unavailable,
		codes.Canceled, codes.DeadlineExceeded, codes.Unknown, codes.Internal, 99} {
		f.Add(uint32(c), "volume bae4c30d: not found")
	}
	f.Add(uint32(codes.OK), "")
	f.Add(uint32(codes.Unknown), "\xff\x00 not utf-8")
	kinds := map[codes.Code]error{codes.NotFound: ErrNotFound, codes.FailedPrecondition: ErrPrecondition,
		codes.Aborted: ErrInProgress, codes.Unavailable: ErrRetryable, codes.Canceled: context.Canceled,
		codes.DeadlineExceeded: context.DeadlineExceeded}
	f.Fuzz(func(t *testing.T, code uint32, msg string) {
		in := status.Error(codes.Code(code), msg)
		err := fromStatus(in)
		if codes.Code(code) == codes.OK {
			if err != nil {
				t.Fatalf("status OK read as %v", err)
			}
			return
		}
		var re *RemoteError
		if !errors.As(err, &re) || re.Message != status.Convert(in).Message() {
			t.Fatalf("status %d %q read as %#v", code, msg, err)
		}
		if want := kinds[codes.Code(code)]; want != nil && !errors.Is(err, want) || want == nil && re.Kind != nil {
			t.Fatalf("status %d read as kind %v", code, re.Kind)
		}
		// And back: the same code and message cross again.
		back := status.Convert(toStatus(err))
		if want := kinds[codes.Code(code)]; want != nil && back.Code() != codes.Code(code) || back.Message() != re.Message {
			t.Fatalf("status %d %q came back as %d %q", code, msg, back.Code(), back.Message())
		}
	})
}
