package etcd

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// embeddedReadyTimeout bounds how long StartEmbedded waits for the server
// to elect itself and serve.
const embeddedReadyTimeout = 30 * time.Second

// Embedded is a single-member etcd server running inside this process,
// listening on 127.0.0.1 only.
type Embedded struct {
	e          *embed.Etcd
	log        *slog.Logger
	closing    *atomic.Bool
	clientPort int
	peerPort   int
}

// StartEmbedded starts an etcd server keeping its data under dir, on free
// client and peer ports of 127.0.0.1.
func StartEmbedded(dir string, log *slog.Logger) (*Embedded, error) {
	var err error
	for range 3 { // a free port can be taken between choosing and binding it
		var cp, pp int
		if cp, pp, err = freePorts(); err != nil {
			return nil, err
		}
		var e *Embedded
		if e, err = StartEmbeddedOn(dir, cp, pp, log); err == nil {
			return e, nil
		}
	}
	return nil, err
}

// StartEmbeddedOn starts an etcd server keeping its data under dir on the
// given ports of 127.0.0.1, so a server can restart where it was.
func StartEmbeddedOn(dir string, clientPort, peerPort int, log *slog.Logger) (*Embedded, error) {
	cfg := embed.NewConfig()
	cfg.Name = "mirrord"
	cfg.Dir = dir
	curl := localURL(clientPort)
	purl := localURL(peerPort)
	cfg.ListenClientUrls = []url.URL{curl}
	cfg.AdvertiseClientUrls = []url.URL{curl}
	cfg.ListenPeerUrls = []url.URL{purl}
	cfg.AdvertisePeerUrls = []url.URL{purl}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	closing := new(atomic.Bool)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(log, closing))
	cfg.EnableGRPCGateway = false
	// History older than an hour is of no use to mirrord's watchers (they
	// re-list on ErrCompacted) and would grow the database for ever.
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "1h"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		closing.Store(true)
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: %w", dir, err)
	case <-time.After(embeddedReadyTimeout):
		closing.Store(true)
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: not ready within %v", dir, embeddedReadyTimeout)
	}
	log.Info("embedded etcd started", "dir", dir, "client_url", curl.String())
	return &Embedded{e: e, log: log, closing: closing, clientPort: clientPort, peerPort: peerPort}, nil
}

// Endpoints returns the client URLs to give to NewClient.
func (s *Embedded) Endpoints() []string {
	return LocalEndpoints(s.clientPort)
}

// LocalEndpoints returns the client URLs of an embedded server listening on
// port.
func LocalEndpoints(port int) []string {
	u := localURL(port)
	return []string{u.String()}
}

// Ports returns the client and peer ports, for StartEmbeddedOn.
func (s *Embedded) Ports() (client, peer int) {
	return s.clientPort, s.peerPort
}

// Close stops the server; its data stays in its directory.
func (s *Embedded) Close() {
	s.closing.Store(true)
	s.e.Close()
	u := localURL(s.clientPort)
	s.log.Info("embedded etcd stopped", "client_url", u.String())
}

func localURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
}

// freePorts returns two ports of 127.0.0.1 free at the time of the call.
func freePorts() (int, int, error) {
	var ports [2]int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, fmt.Errorf("embedded etcd: free port: %w", err)
		}
		ls = append(ls, l)
		addr, ok := l.Addr().(*net.TCPAddr)
		if !ok {
			return 0, 0, errors.New("embedded etcd: free port: not a TCP address")
		}
		ports[i] = addr.Port
	}
	return ports[0], ports[1], nil
}
