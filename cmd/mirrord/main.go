// Command mirrord is the mirror daemon: it watches the DR manager's desired
// state in etcd, replicates volumes through storage plugins, consumes
// snapshot events from NATS, and writes every status back to etcd.
//
//	mirrord --embedded /var/lib/mirrord    # development: in-process etcd and NATS
//	mirrord --config /etc/mirror/mirrord.yaml
//	                                       # production (deploy/ has a unit and an example)
//	mirrord leftovers --config /etc/mirror/mirrord.yaml [-o json]
//	                                       # what the plugins left on the storages
//	mirrord --version
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
	os.Exit(command(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// command runs what args ask for: the daemon, or a subcommand named by
// the first argument. It returns the exit code.
func command(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "leftovers":
			return runLeftovers(ctx, args[1:], getenv, stdout, stderr)
		case "--version", "-version", "version":
			return printVersion(stdout)
		}
	}
	return run(ctx, args, getenv, stdout, stderr)
}

// run is main without the process: it returns the exit code. It stops
// cleanly on SIGINT/SIGTERM or when ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(args, getenv, stderr)
	if printedHelp(err, stdout) {
		return 0
	}
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
