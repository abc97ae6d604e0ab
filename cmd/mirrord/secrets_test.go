package main

import (
	"context"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/cdmdr/mirror/test/secretscan"
)

// watchSecrets makes the cluster fail its test when a test secret shows
// up where no secret may go: a daemon's log (each line as written), a
// NATS message on cdm.> (mirrord's events), or any value ever written to
// etcd outside the storage records and metadata (clusters/, the cluster
// manager's input, where keyrings belong), read from etcd's history at
// the end of the test, after the daemons stopped.
func (c *cluster) watchSecrets() {
	c.t.Helper()
	c.secrets = secretscan.New()
	nc, err := natsgo.Connect(c.nats.URL(), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(100*time.Millisecond))
	if err != nil {
		c.t.Fatalf("connect to nats to scan for secrets: %v", err)
	}
	// cdm.> holds mirrord's events and the cluster manager's messages.
	// Not ">": interest in a stopped daemon's pull inbox (_INBOX.…) would
	// make JetStream deliver there, and hold the message until AckWait.
	if _, err := nc.Subscribe("cdm.>", func(m *natsgo.Msg) {
		c.secrets.Scan("NATS message on "+m.Subject, m.Data)
	}); err != nil {
		nc.Close()
		c.t.Fatalf("subscribe to nats to scan for secrets: %v", err)
	}
	// Registered after etcd and NATS started: runs before they stop, and
	// after the daemons, started later, stopped.
	c.t.Cleanup(func() {
		if nc.IsConnected() { // NATS may be down at the end of a test
			_ = nc.FlushTimeout(5 * time.Second)
		}
		nc.Close()
		if _, bench := c.t.(*testing.B); bench {
			// 10,000 volumes and more: etcd's whole history is too much
			// to read; the logs and NATS were scanned all along.
			c.secrets.Report(c.t)
			return
		}
		began := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.secrets.ScanEtcd(ctx, c.cli); err != nil {
			c.t.Errorf("scan etcd for secrets: %v", err)
		}
		c.secrets.Report(c.t)
		c.t.Logf("secret scan of etcd's history took %s", time.Since(began).Round(time.Millisecond))
	})
}

// TestSecretScanFails: a keyring written to a status and overwritten
// since, and one published on NATS, fail the test, each named where it
// was; the keyring in the storage metadata does not.
func TestSecretScanFails(t *testing.T) {
	rec := &secretscan.Recorder{TB: t}
	t.Run("planted", func(t *testing.T) {
		rec.TB = t
		c := newClusterTB(rec)
		c.put("clusters/5/storages/11/metadata", seedMetadata())
		c.put("mirror_volume/storage.11.13/volume.7/status", `{"state_code":"error","reason":"key `+seedAdmin+`"}`)
		c.put("mirror_volume/storage.11.13/volume.7/status", `{"state_code":"error"}`)
		c.publish("cdm.dr.mirror.event", map[string]string{"message": "keyring " + seedKeyring})
	})
	all := rec.Errors()
	for _, want := range []string{
		`"Ceph admin keyring (cmd/mirrord storage metadata)" (plain) found in etcd key mirror_volume/storage.11.13/volume.7/status (revision`,
		`"Ceph keyring (app and cmd/mirrord storage metadata)" (plain) found in NATS message on cdm.dr.mirror.event`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the scan did not report %s; it reported:\n%s", want, all)
		}
	}
	if strings.Contains(all, "clusters/") || strings.Contains(all, seedKeyring) || strings.Contains(all, seedAdmin) {
		t.Errorf("the scan reported the metadata, or printed a secret:\n%s", all)
	}
	t.Logf("reported:\n%s", all)
}
