package sdk

import (
	"context"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/cdmdr/mirror/plugins/sdk/internal/pb"
)

// BackendPlugin is the go-plugin glue: on the plugin side it serves Impl
// over gRPC, on the daemon side it returns a Backend that calls the
// plugin. Only gRPC is spoken.
type BackendPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the backend served; nil on the daemon side.
	Impl Backend
}

var _ plugin.GRPCPlugin = (*BackendPlugin)(nil)

// GRPCServer registers the backend's gRPC service.
func (p *BackendPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterBackendServer(s, &grpcServer{impl: p.Impl})
	return nil
}

// GRPCClient returns a Backend speaking to the plugin over conn.
func (p *BackendPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (interface{}, error) {
	return NewGRPCClient(conn), nil
}
