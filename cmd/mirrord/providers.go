package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	natsgo "github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/adapters/etcd"
	"github.com/cdmdr/mirror/adapters/metrics"
	"github.com/cdmdr/mirror/adapters/nats"
	"github.com/cdmdr/mirror/adapters/pluginhost"
	"github.com/cdmdr/mirror/app"
	"github.com/cdmdr/mirror/ports"
)

// Daemon is what main runs.
type Daemon struct {
	Engine *app.Engine
	// HTTP serves /metrics, /healthz and /readyz (nil when not asked).
	HTTP *httpServer
}

func provideEtcdClient(c Config, log *slog.Logger) (*clientv3.Client, func(), error) {
	return etcd.NewClient(etcd.Config{
		Endpoints: c.Etcd.Endpoints, Username: c.Etcd.Username, Password: c.Etcd.Password,
		CAFile: c.Etcd.CAFile, CertFile: c.Etcd.CertFile, KeyFile: c.Etcd.KeyFile,
		DialTimeout: c.Etcd.DialTimeout, SessionTTL: c.Etcd.SessionTTL,
	}, log.With("component", "etcd"))
}

// provideElection's cleanup closes the session, revoking its lease so
// other daemons take this one's volumes over at once, not after the TTL.
func provideElection(cl *clientv3.Client, c Config, log *slog.Logger) (*etcd.Election, func(), error) {
	e, err := etcd.NewElection(cl, c.DaemonID, c.Etcd.LeaderPrefix, c.Etcd.SessionTTL, log.With("component", "election"))
	if err != nil {
		return nil, nil, fmt.Errorf("leader election: %w", err)
	}
	return e, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			log.Warn("election close failed; leaderships expire with the session", "err", err)
		}
	}, nil
}

func natsConfig(c Config) nats.Config {
	return nats.Config{
		URL: c.NATS.URL, CredsFile: c.NATS.CredsFile, User: c.NATS.User, Password: c.NATS.Password,
		Token: c.NATS.Token, Mode: c.NATS.Mode, Name: "mirrord " + c.DaemonID,
		StreamSubjects: []string{c.NATS.CreatedSubj, c.NATS.DeletedSubj},
	}
}

func provideNATSConn(c Config, log *slog.Logger) (*natsgo.Conn, func(), error) {
	return nats.Connect(natsConfig(c), log.With("component", "nats"))
}

func provideBus(ctx context.Context, nc *natsgo.Conn, c Config, log *slog.Logger) (*nats.Bus, error) {
	return nats.NewBus(ctx, nc, natsConfig(c), log.With("component", "bus"))
}

// provideEvents publishes events on the bus, counted by code.
func provideEvents(bus ports.Bus, c Config, log *slog.Logger, m *metrics.Metrics) ports.EventReporter {
	return m.Events(app.NewBusEvents(bus, app.EventSubject(c.NATS.EventSubject), log))
}

// provideEngine builds the engine on backends whose calls are measured.
func provideEngine(cfg app.Config, kv ports.KV, election ports.Election, bus ports.Bus, backends ports.Backends,
	events ports.EventReporter, clock ports.Clock, log *slog.Logger, m *metrics.Metrics) *app.Engine {
	return app.NewEngine(cfg, kv, election, bus, m.Backends(backends), events, clock, log)
}

func provideEngineConfig(c Config, m *metrics.Metrics) app.Config {
	return app.Config{
		Metrics:      m,
		LeaderPrefix: c.Etcd.LeaderPrefix, ResyncInterval: c.ResyncInterval, PollInterval: c.PollInterval,
		ActionTimeout:    c.ActionTimeout,
		FastPollInterval: c.FastPoll, SnapshotPollInterval: min(c.SnapshotPoll, c.FastPoll),
		SnapshotCreatedSubject: c.NATS.CreatedSubj, SnapshotDeletedSubject: c.NATS.DeletedSubj,
	}
}

// provideBackends runs the plugin host: it loads the plugins of the
// plugin directory and keeps them running (rescanning the directory,
// restarting crashed ones) until cleanup, which comes after the engine
// stopped, so no worker loses its backend mid-call on shutdown.
func provideBackends(ctx context.Context, c Config, log *slog.Logger) (*pluginhost.Host, func(), error) {
	// The engine bounds each call by the action timeout; the host's bound
	// is the same, so its "no answer within" names the configured value.
	h := pluginhost.New(pluginhost.Config{Dir: c.PluginDir, Plugins: hostSettings(c.Plugins), CallTimeout: c.ActionTimeout}, log.With("component", "plugins"))
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := h.Run(hctx); err != nil {
			log.Error("plugin host stopped", "err", err)
		}
	}()
	return h, func() {
		cancel()
		<-done
		h.Close()
	}, nil
}

// hostSettings are the configuration's plugin settings as the plugin host
// takes them.
func hostSettings(ps map[string]PluginSettings) map[string]pluginhost.Settings {
	out := make(map[string]pluginhost.Settings, len(ps))
	for name, s := range ps {
		out[name] = pluginhost.Settings{Args: s.Args, Env: s.Env}
	}
	return out
}
