// Package natstest runs NATS servers in process for tests.
package natstest

import (
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"

	mnats "github.com/cdmdr/mirror/adapters/nats"
)

// Server is an embedded NATS server on 127.0.0.1 with its store in a
// temporary directory; it keeps its port and store across Restart.
type Server struct {
	dir       string
	jetstream bool
	log       *slog.Logger

	mu   sync.Mutex
	e    *mnats.Embedded // nil while stopped
	port int
}

// Start starts a server, with JetStream if jetstream is set, shut down
// when the test ends. Its log goes to stderr under go test -v.
func Start(t testing.TB, jetstream bool) *Server {
	t.Helper()
	s := &Server{dir: t.TempDir(), jetstream: jetstream, log: Logger()}
	e, err := mnats.StartEmbeddedOn(s.dir, -1, jetstream, s.log)
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	s.e, s.port = e, e.Port()
	t.Cleanup(s.Stop)
	return s
}

// URL is the server's client URL; it stays the same across Restart.
func (s *Server) URL() string {
	return "nats://127.0.0.1:" + strconv.Itoa(s.port)
}

// Stop shuts the server down and waits until it has; a stopped server
// stays stopped until Restart. Clients keep trying to reconnect.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != nil {
		s.e.Shutdown()
		s.e = nil
	}
}

// Restart stops the server if it runs and starts it again on the same port
// with the same store, so JetStream streams, consumers and their messages
// survive.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := mnats.StartEmbeddedOn(s.dir, s.port, s.jetstream, s.log)
	if err != nil {
		t.Fatalf("restart nats on port %d: %v", s.port, err)
	}
	s.e = e
}

// Logger returns a logger for tests: text to stderr under go test -v,
// nothing otherwise. (Not testing.TB's output: NATS logs from its own
// goroutines, possibly after the test ended.)
func Logger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}
