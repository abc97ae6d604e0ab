//go:build wireinject

package main

import (
	"context"
	"log/slog"

	"github.com/google/wire"

	"github.com/cdmdr/mirror/adapters/clock"
	"github.com/cdmdr/mirror/adapters/etcd"
	"github.com/cdmdr/mirror/adapters/metrics"
	"github.com/cdmdr/mirror/adapters/nats"
	"github.com/cdmdr/mirror/adapters/pluginhost"
	"github.com/cdmdr/mirror/ports"
)

var adapterSet = wire.NewSet(
	provideEtcdClient,
	etcd.NewKV,
	provideElection,
	provideNATSConn,
	provideBus,
	provideEvents,
	provideEngineConfig,
	clock.New,
	metrics.New,
	provideEngine,
	provideHTTP,
	wire.Bind(new(ports.KV), new(*etcd.KV)),
	wire.Bind(new(ports.Election), new(*etcd.Election)),
	wire.Bind(new(ports.Bus), new(*nats.Bus)),
	wire.Bind(new(ports.Clock), new(clock.System)),
	wire.Struct(new(Daemon), "Engine", "HTTP"),
)

// initDaemon builds mirrord on etcd and NATS with its storage plugins.
func initDaemon(ctx context.Context, c Config, log *slog.Logger) (*Daemon, func(), error) {
	wire.Build(adapterSet, provideBackends, providePluginView, wire.Bind(new(ports.Backends), new(*pluginhost.Host)))
	return nil, nil, nil
}

// initDaemonWith builds mirrord on etcd and NATS with the given backends
// (integration tests use a scripted one).
func initDaemonWith(ctx context.Context, c Config, log *slog.Logger, backends ports.Backends) (*Daemon, func(), error) {
	wire.Build(adapterSet, noPluginView)
	return nil, nil, nil
}
