package etcd

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
)

// NewClient connects to etcd as cfg says and returns the client and a
// cleanup that closes it. With a username it logs in at once, so a wrong
// password fails here; otherwise connecting is lazy and the first call
// reports an unreachable cluster.
func NewClient(cfg Config, log *slog.Logger) (*clientv3.Client, func(), error) {
	if len(cfg.Endpoints) == 0 {
		return nil, nil, errors.New("etcd client: no endpoints")
	}
	if (cfg.Username == "") != (cfg.Password == "") {
		return nil, nil, errors.New("etcd client: username and password must be set together")
	}
	cc := clientv3.Config{
		Endpoints:   cfg.Endpoints,
		Username:    cfg.Username,
		Password:    cfg.Password,
		DialTimeout: cfg.dialTimeout(),
		// Notice a silently dead connection (a watch would hang on it).
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		// gRPC's default reconnect backoff grows to 2 minutes: after a long
		// etcd outage the daemon would stay away that long once it is back.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
			MinConnectTimeout: cfg.dialTimeout(),
		})},
		// etcd's own zap logging is noise in the daemon's log; errors come
		// back to the caller.
		Logger: zap.NewNop(),
	}
	if cfg.tls() {
		info := transport.TLSInfo{
			TrustedCAFile: cfg.CAFile,
			CertFile:      cfg.CertFile,
			KeyFile:       cfg.KeyFile,
		}
		tc, err := info.ClientConfig()
		if err != nil {
			return nil, nil, fmt.Errorf("etcd client: tls: %w", err)
		}
		cc.TLS = tc
	}
	c, err := clientv3.New(cc)
	if err != nil {
		who := strings.Join(cfg.Endpoints, ",")
		if cfg.Username != "" {
			who = fmt.Sprintf("%s as user %q", who, cfg.Username)
		}
		// etcd's errors do not echo the password; make sure of it.
		if cfg.Password != "" && strings.Contains(err.Error(), cfg.Password) {
			return nil, nil, fmt.Errorf("etcd client: connect to %s: %s", who,
				strings.ReplaceAll(err.Error(), cfg.Password, "***"))
		}
		return nil, nil, fmt.Errorf("etcd client: connect to %s: %w", who, err)
	}
	log.Info("etcd client ready",
		"endpoints", cfg.Endpoints, "user", cfg.Username, "tls", cfg.tls())
	return c, func() {
		if err := c.Close(); err != nil {
			log.Warn("etcd client close", "err", err)
		}
	}, nil
}
