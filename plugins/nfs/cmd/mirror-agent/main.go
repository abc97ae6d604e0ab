// Command mirror-agent runs next to a file storage (an NFS share's
// server, say) and serves the block sums and blocks of the volume files
// in one directory to the mirror nfs plugin, which copies only changed
// blocks to the target. Only callers holding the token are served, over
// TLS (and mTLS) when configured.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/cdmdr/mirror/plugins/nfs/agent"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the agent until ctx ends; it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "mirror-agent:", err)
		return 2
	}
	if cfg.version {
		fmt.Fprintln(stdout, "mirror-agent", versionString())
		return 0
	}
	log := newLogger(stderr, cfg.logLevel)
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("mirror-agent failed", "err", err)
		return 1
	}
	return 0
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// shutdownGrace is how long transfers may finish after a signal.
const shutdownGrace = 10 * time.Second

func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	token, err := readToken(cfg.tokenFile)
	if err != nil {
		return err
	}
	srv, err := agent.New(agent.Config{Dir: cfg.dir, Token: token, Logger: log})
	if err != nil {
		return err
	}
	defer srv.Close()
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		Protocols:         new(http.Protocols), // HTTP/1.1 only, the protocol's
	}
	hs.Protocols.SetHTTP1(true)
	if cfg.tlsCert != "" {
		if hs.TLSConfig, err = agent.TLSConfig(cfg.tlsCert, cfg.tlsKey, cfg.clientCA); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	log.Info("listening", "addr", ln.Addr().String(), "dir", cfg.dir, "tls", hs.TLSConfig != nil, "mtls", cfg.clientCA != "", "version", versionString())
	if hs.TLSConfig == nil {
		log.Warn("serving without TLS: the token and the data cross the network in clear; set -tls-cert and -tls-key")
	}
	done := make(chan error, 1)
	go func() {
		if hs.TLSConfig != nil {
			done <- hs.ServeTLS(ln, "", "")
		} else {
			done <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-done:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: letting transfers finish", "grace", shutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("transfers cut at shutdown", "err", err)
		hs.Close()
	}
	<-done
	log.Info("stopped")
	return nil
}
