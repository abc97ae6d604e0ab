package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/test/secretscan"
)

// watchSecrets makes the cluster fail its test when a test secret shows
// up where no secret may go: a daemon's log (each line as written), any
// NATS message (events included), or any value ever written to etcd
// outside the storage records and metadata (clusters/, the cluster
// manager's input, where keyrings belong), read from etcd's history at
// the end of the test, after the daemons stopped.
func (c *cluster) watchSecrets() {
	c.t.Helper()
	c.secrets = secretscan.New()
	nc, err := natsgo.Connect(c.nats.URL(), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(100*time.Millisecond))
	if err != nil {
		c.t.Fatalf("connect to nats to scan for secrets: %v", err)
	}
	if _, err := nc.Subscribe(">", func(m *natsgo.Msg) {
		c.secrets.Scan("NATS message on "+m.Subject, m.Data)
	}); err != nil {
		nc.Close()
		c.t.Fatalf("subscribe to nats to scan for secrets: %v", err)
	}
	// Registered after etcd and NATS started: runs before they stop, and
	// after the daemons, started later, stopped.
	c.t.Cleanup(func() {
		_ = nc.Flush() // NATS may be down at the end of a test
		nc.Close()
		c.scanEtcdHistory()
		c.secrets.Report(c.t)
	})
}

// scanEtcdHistory scans every value written to etcd outside clusters/,
// from the oldest revision not compacted to now.
func (c *cluster) scanEtcdHistory() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now, err := c.cli.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		c.t.Errorf("scan etcd for secrets: %v", err)
		return
	}
	for _, kv := range now.Kvs {
		if k := string(kv.Key); !strings.HasPrefix(k, core.ClustersPrefix) {
			c.secrets.Scan("etcd key "+k, kv.Value)
		}
	}
	end := now.Header.Revision
	for from := int64(1); from <= end; {
		w := c.cli.Watch(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(from))
		from = c.scanWatch(w, end)
		if err := ctx.Err(); err != nil {
			c.t.Errorf("scan etcd's history for secrets: %v", err)
			return
		}
	}
}

// scanWatch scans the events of w up to revision end; it returns where to
// watch from next: past end when done, the compaction's revision when
// older revisions are gone.
func (c *cluster) scanWatch(w clientv3.WatchChan, end int64) int64 {
	last := int64(0)
	for resp := range w {
		if resp.CompactRevision != 0 {
			return resp.CompactRevision
		}
		if err := resp.Err(); err != nil {
			c.t.Errorf("scan etcd's history for secrets: %v", err)
			return end + 1
		}
		for _, ev := range resp.Events {
			last = ev.Kv.ModRevision
			if k := string(ev.Kv.Key); !strings.HasPrefix(k, core.ClustersPrefix) {
				c.secrets.Scan(fmt.Sprintf("etcd key %s (revision %d)", k, last), ev.Kv.Value)
			}
		}
		if last >= end {
			return end + 1
		}
	}
	return end + 1 // the context ended; the caller reports it
}

// errorsTB records Errorf instead of failing the test.
type errorsTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (e *errorsTB) Errorf(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errs = append(e.errs, fmt.Sprintf(format, args...))
}

// TestSecretScanFails: a keyring written to a status and overwritten
// since, and one published on NATS, fail the test, each named where it
// was; the keyring in the storage metadata does not.
func TestSecretScanFails(t *testing.T) {
	rec := &errorsTB{TB: t}
	t.Run("planted", func(t *testing.T) {
		rec.TB = t
		c := newClusterTB(rec)
		c.put("clusters/5/storages/11/metadata", seedMetadata())
		c.put("mirror_volume/storage.11.13/volume.7/status", `{"state_code":"error","reason":"key `+seedAdmin+`"}`)
		c.put("mirror_volume/storage.11.13/volume.7/status", `{"state_code":"error"}`)
		c.publish("cdm.dr.mirror.event", map[string]string{"message": "keyring " + seedKeyring})
	})
	all := strings.Join(rec.errs, "\n")
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
