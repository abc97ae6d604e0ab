// Command mirrord is the mirror daemon: it watches the DR manager's desired
// state in etcd, replicates volumes through storage plugins, consumes
// snapshot events from NATS, and writes every status back to etcd.
//
//	mirrord --embedded /var/lib/mirrord    # development: in-process etcd and NATS
//	mirrord --config /etc/mirrord.yaml     # production
package main

//go:generate go tool wire

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stderr))
}

// run is main without the process: it returns the exit code. It stops
// cleanly on SIGINT/SIGTERM or when ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, err := loadConfig(args, getenv, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "mirrord:", err)
		return 2
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("mirrord stopped", "err", err)
		return 1
	}
	return 0
}

// serve runs the daemon until ctx ends.
func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	if cfg.Embedded != "" {
		emb, err := startEmbedded(cfg.Embedded, cfg.EmbeddedEtcdPort, cfg.EmbeddedNATSPort, log)
		if err != nil {
			return err
		}
		defer emb.Close()
		cfg.Etcd.Endpoints = emb.etcd.Endpoints()
		cfg.NATS.URL = emb.nats.URL()
		log.Info("embedded servers running", "dir", cfg.Embedded, "etcd", cfg.Etcd.Endpoints, "nats", cfg.NATS.URL)
	}
	d, cleanup, err := initDaemon(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer cleanup()
	log.Info("mirrord starting", "daemon_id", cfg.DaemonID, "etcd", cfg.Etcd.Endpoints, "plugin_dir", cfg.PluginDir)
	return d.Engine.Run(ctx)
}
