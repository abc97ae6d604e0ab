package sdk

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/cdmdr/mirror/plugins/sdk/internal/pb"
)

// oldPlugin serves a backend as a plugin built before VolumeStatuses
// existed: its service has every method but that one, so gRPC answers it
// codes.Unimplemented.
type oldPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl Backend
}

func (p *oldPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	desc := pb.Backend_ServiceDesc
	desc.Methods = slices.DeleteFunc(slices.Clone(desc.Methods), func(m grpc.MethodDesc) bool {
		return m.MethodName == "VolumeStatuses"
	})
	s.RegisterService(&desc, &grpcServer{impl: p.impl})
	return nil
}

func (p *oldPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (interface{}, error) {
	return NewGRPCClient(conn), nil
}

// fixedStatus reports fixed replications by volume UUID (absent when it
// has none), and counts the VolumeStatus calls it gets. Only
// VolumeStatus is called.
type fixedStatus struct {
	Backend
	reps map[string]VolumeReplication
	n    atomic.Int64
}

func (f *fixedStatus) VolumeStatus(ctx context.Context, vol Volume) (VolumeReplication, error) {
	f.n.Add(1)
	if rep, ok := f.reps[vol.VolumeUUID]; ok {
		return rep, nil
	}
	return VolumeReplication{State: ReplicationAbsent}, nil
}

// TestVolumeStatusesOfOldPlugin: a plugin built before VolumeStatuses
// keeps working: the client asks it VolumeStatus of each volume instead,
// and does not try the bulk call again.
func TestVolumeStatusesOfOldPlugin(t *testing.T) {
	ctx := t.Context()
	impl := &fixedStatus{reps: map[string]VolumeReplication{
		"replaying": {State: ReplicationReplaying, TargetExists: true, Progress: 100, Lag: "0 entries"},
		"failed":    {State: ReplicationFailed, TargetExists: true, Description: "split-brain"},
	}}
	conn, server := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{PluginName: &oldPlugin{impl: impl}})
	t.Cleanup(func() { server.Stop(); _ = conn.Close() })
	raw, err := conn.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	client := raw.(Backend)

	env := Environment{ID: "storage.1.2"}
	var vols []Volume
	var want []VolumeReplication
	for i, uuid := range []string{"replaying", "never-started", "failed"} {
		vols = append(vols, Volume{Environment: env, ClusterID: 1, VolumeID: uint64(i), VolumeUUID: uuid})
		want = append(want, impl.reps[uuid])
	}
	want[1] = VolumeReplication{State: ReplicationAbsent}

	for round := 1; round <= 2; round++ {
		reps, err := client.VolumeStatuses(ctx, env, vols)
		if err != nil {
			t.Fatalf("round %d: VolumeStatuses of a plugin without it = %v, want one VolumeStatus per volume", round, err)
		}
		if !slices.Equal(reps, want) {
			t.Fatalf("round %d: VolumeStatuses of a plugin without it = %+v, want %+v", round, reps, want)
		}
		if n := impl.n.Load(); n != int64(round*len(vols)) {
			t.Fatalf("round %d: the plugin got %d VolumeStatus calls in all, want %d", round, n, round*len(vols))
		}
	}
	if !client.(*grpcClient).oneByOne.Load() {
		t.Fatal("the client will ask the plugin VolumeStatuses again, though it answered Unimplemented")
	}
}
