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
//
// Clients reach it through a TCP proxy that drops every connection when
// the server stops, as a network outage would. (Without it, etcd's
// graceful stop waits up to 7s for open watch streams to end.)
type Server struct {
	dir              string
	clientPort, peer int
	proxy            *proxy

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
	s.proxy, err = newProxy(etcd.LocalEndpoints(s.clientPort)[0][len("http://"):])
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		s.proxy.close()
	})
	return s
}

// Endpoints returns the client URLs of the server, through the proxy.
func (s *Server) Endpoints() []string {
	return []string{"http://" + s.proxy.addr()}
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

// DirectClient returns a new client that bypasses the proxy, so it keeps
// working while the others are disconnected. Closed at t's cleanup.
func (s *Server) DirectClient(t testing.TB) *clientv3.Client {
	t.Helper()
	c, closeClient, err := etcd.NewClient(etcd.Config{Endpoints: etcd.LocalEndpoints(s.clientPort)}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeClient)
	return c
}

// Disconnect drops every client connection (but DirectClient's) and
// refuses new ones, while the server keeps running.
func (s *Server) Disconnect() { s.proxy.setUp(false) }

// Reconnect ends Disconnect.
func (s *Server) Reconnect() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != nil {
		s.proxy.setUp(true)
	}
}

// Stop drops every client connection and stops the server, keeping its
// data. Clients retry until Restart. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != nil {
		s.proxy.setUp(false)
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
	s.proxy.setUp(true)
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
