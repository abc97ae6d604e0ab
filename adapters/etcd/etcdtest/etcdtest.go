// Package etcdtest runs an embedded etcd server for tests.
package etcdtest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/adapters/etcd"
)

// Server is an embedded etcd server in a test's temporary directory,
// listening on 127.0.0.1 and stopped when the test ends.
type Server struct {
	dir              string
	clientPort, peer int

	mu sync.Mutex
	e  *etcd.Embedded // nil while stopped
}

// Start starts a server for t, stopped at t's cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	e, err := etcd.StartEmbedded(dir, quiet())
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{dir: dir, e: e}
	s.clientPort, s.peer = e.Ports()
	t.Cleanup(s.Stop)
	return s
}

// Endpoints returns the server's client URLs.
func (s *Server) Endpoints() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return etcd.LocalEndpoints(s.clientPort)
}

// Client returns a new client of the server, closed at t's cleanup.
func (s *Server) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	c, closeClient, err := etcd.NewClient(etcd.Config{Endpoints: s.Endpoints()}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeClient)
	return c
}

// Stop stops the server, keeping its data. Stopping a stopped server does
// nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != nil {
		s.e.Close()
		s.e = nil
	}
}

// Restart stops the server and starts it again on the same directory and
// ports, so clients reconnect to it and find their data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := etcd.StartEmbeddedOn(s.dir, s.clientPort, s.peer, quiet())
	if err != nil {
		t.Fatal(err)
	}
	s.e = e
}

// Compact drops the server's history before rev.
func (s *Server) Compact(t testing.TB, rev int64) {
	t.Helper()
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact at %d: %v", rev, err)
	}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }
