package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// readyTimeout bounds how long StartEmbedded waits for the server.
const readyTimeout = 10 * time.Second

// Embedded is a NATS server running in this process, listening on
// 127.0.0.1 only.
type Embedded struct {
	srv  *server.Server
	port int
}

// StartEmbedded starts a server with JetStream, its store under dir, on a
// free port of 127.0.0.1.
func StartEmbedded(dir string, log *slog.Logger) (*Embedded, error) {
	return StartEmbeddedOn(dir, -1, true, log)
}

// StartEmbeddedOn starts a server on port of 127.0.0.1 (-1: a free one),
// with JetStream storing under dir if jetstream is set. Starting again on
// the same port and dir resumes the previous server's streams and
// consumers. The server's own log goes to log: its notices at debug, its
// warnings and errors at their levels.
func StartEmbeddedOn(dir string, port int, jetstream bool, log *slog.Logger) (*Embedded, error) {
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "mirrord-embedded",
		Host:       "127.0.0.1",
		Port:       port,
		HTTPPort:   0,
		NoSigs:     true,
		JetStream:  jetstream,
		StoreDir:   dir,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	srv.SetLogger(serverLogger{log.With("component", "nats-server")}, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("embedded nats: not ready for connections")
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("embedded nats: unexpected listen address %v", srv.Addr())
	}
	return &Embedded{srv: srv, port: addr.Port}, nil
}

// URL is the server's client URL, nats://127.0.0.1:port.
func (e *Embedded) URL() string { return e.srv.ClientURL() }

// Port is the port the server listens on.
func (e *Embedded) Port() int { return e.port }

// Shutdown stops the server and waits until it has. Clients see a
// disconnect and keep trying to reconnect.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// serverLogger routes the server's log to slog.
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) emit(level slog.Level, format string, v []any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.log.Log(context.Background(), level, strings.ToLower(fmt.Sprintf(format, v...)))
}

func (l serverLogger) Noticef(format string, v ...any) { l.emit(slog.LevelDebug, format, v) }
func (l serverLogger) Warnf(format string, v ...any)   { l.emit(slog.LevelWarn, format, v) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.emit(slog.LevelError, format, v) }
func (l serverLogger) Errorf(format string, v ...any)  { l.emit(slog.LevelError, format, v) }
func (l serverLogger) Debugf(format string, v ...any)  { l.emit(slog.LevelDebug, format, v) }
func (l serverLogger) Tracef(format string, v ...any)  { l.emit(slog.LevelDebug-4, format, v) }
