package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cdmdr/mirror/adapters/etcd"
	"github.com/cdmdr/mirror/adapters/nats"
)

// embedded is an in-process etcd and NATS (with JetStream) on loopback,
// their data under one directory, for development and demos.
type embedded struct {
	etcd *etcd.Embedded
	nats *nats.Embedded
}

func startEmbedded(dir string, etcdPort, natsPort int, log *slog.Logger) (*embedded, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded data dir: %w", err)
	}
	etcdDir, etcdLog := filepath.Join(dir, "etcd"), log.With("component", "embedded-etcd")
	var e *etcd.Embedded
	var err error
	if etcdPort > 0 {
		e, err = etcd.StartEmbeddedOn(etcdDir, etcdPort, etcdPort+1, etcdLog)
	} else {
		e, err = etcd.StartEmbedded(etcdDir, etcdLog)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	if natsPort == 0 {
		natsPort = -1 // the NATS server's "any free port"
	}
	n, err := nats.StartEmbeddedOn(filepath.Join(dir, "nats"), natsPort, true, log.With("component", "embedded-nats"))
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	return &embedded{etcd: e, nats: n}, nil
}

func (e *embedded) Close() {
	e.nats.Shutdown()
	e.etcd.Close()
}
