package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/adapters/etcd/etcdtest"
	"github.com/cdmdr/mirror/adapters/fake"
	"github.com/cdmdr/mirror/adapters/nats/natstest"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
	"github.com/cdmdr/mirror/test/secretscan"
)

// cluster is a real etcd and NATS (JetStream) on loopback, a scripted
// storage backend shared by the daemons of a test, and a plain etcd client
// playing the DR and cluster managers.
type cluster struct {
	t        testing.TB
	etcd     *etcdtest.Server
	nats     *natstest.Server
	backend  *fake.Backend
	backends *fake.Backends
	cli      *clientv3.Client
	// endpoints, when set, are the etcd the daemons use instead of etcd's
	// (a multi-member cluster, say; etcd is then nil).
	endpoints []string
	// secrets scans the daemons' logs, what NATS carried and etcd's
	// history for the test secrets (secrets_test.go).
	secrets *secretscan.Scanner
}

const cephType = "openstack.storage.type.ceph"

func newCluster(t *testing.T) *cluster { return newClusterTB(t) }

func newClusterTB(t testing.TB) *cluster {
	t.Helper()
	b := fake.NewBackend(cephType)
	c := &cluster{t: t, etcd: etcdtest.Start(t), nats: natstest.Start(t, true), backend: b,
		backends: fake.NewBackends(map[string]ports.StorageBackend{cephType: b})}
	c.cli = c.etcd.Client(t)
	c.watchSecrets()
	return c
}

// config is a daemon's configuration against the cluster, with short
// intervals so tests converge fast.
func (c *cluster) config(id string) Config {
	cfg := defaultConfig()
	cfg.DaemonID = id
	cfg.Etcd.Endpoints = c.endpoints
	if c.endpoints == nil {
		cfg.Etcd.Endpoints = c.etcd.Endpoints()
	}
	cfg.Etcd.SessionTTL = 2 * time.Second
	cfg.NATS.URL = c.nats.URL()
	cfg.ResyncInterval = 5 * time.Second
	cfg.PollInterval = time.Second
	cfg.FastPoll = 200 * time.Millisecond
	// Many daemons share a test: none serves the endpoints unless its
	// test asks (on a free port).
	cfg.HTTPAddress = ""
	return cfg
}

// daemon is one running mirrord, built by the same wire injector as main
// but with the cluster's scripted backend.
type daemon struct {
	id     string
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	once   sync.Once
	// httpAddr is where its endpoints listen ("" when not serving).
	httpAddr string
}

func (c *cluster) start(id string, edit ...func(*Config)) *daemon {
	c.t.Helper()
	return c.startOn(id, c.backends, edit...)
}

// startOn starts a daemon on the given backends.
func (c *cluster) startOn(id string, backends ports.Backends, edit ...func(*Config)) *daemon {
	c.t.Helper()
	cfg := c.config(id)
	for _, e := range edit {
		e(&cfg)
	}
	logs := &syncBuffer{}
	out := c.secrets.Writer("the log of daemon "+id, logs)
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test_daemon", id)
	ctx, cancel := context.WithCancel(context.Background())
	d, cleanup, err := initDaemonWith(ctx, cfg, log, backends)
	if err != nil {
		cancel()
		c.t.Fatalf("start %s: %v", id, err)
	}
	dm := &daemon{id: id, logs: logs, cancel: cancel, done: make(chan struct{}), httpAddr: d.HTTP.Addr()}
	go func() {
		dm.err = d.Engine.Run(ctx)
		cleanup()
		close(dm.done)
	}()
	c.t.Cleanup(func() {
		dm.stop()
		if c.t.Failed() {
			c.t.Logf("logs of %s:\n%s", id, logs.String())
		}
	})
	return dm
}

// stop stops the daemon gracefully and waits for it.
func (d *daemon) stop() {
	d.once.Do(d.cancel)
	<-d.done
}

// put writes a raw value as another program would.
func (c *cluster) put(key, value string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.cli.Put(ctx, key, value); err != nil {
		c.t.Fatalf("put %s: %v", key, err)
	}
}

// get returns a key's value, "" when missing.
func (c *cluster) get(key string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

// keys lists the keys under prefix.
func (c *cluster) keys(prefix string) map[string]string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		c.t.Fatalf("list %s: %v", prefix, err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

func (c *cluster) status(key string) (core.Status, bool) {
	v := c.get(key)
	if v == "" {
		return core.Status{}, false
	}
	st, err := core.DecodeStatus([]byte(v))
	if err != nil {
		c.t.Fatalf("status %s = %s: %v", key, v, err)
	}
	return st, true
}

// waitFor polls cond until it holds or the deadline passes.
func (c *cluster) waitFor(what string, within time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %s; keys:\n%s", within, what, dumpKeys(c.keys("")))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *cluster) waitState(key string, s core.State) core.Status {
	c.t.Helper()
	var st core.Status
	c.waitFor(key+" = "+string(s), 20*time.Second, func() bool {
		var ok bool
		st, ok = c.status(key)
		return ok && st.StateCode == s
	})
	return st
}

func (c *cluster) waitGone(key string) {
	c.t.Helper()
	c.waitFor(key+" deleted", 20*time.Second, func() bool { return c.get(key) == "" })
}

// publish sends a message as the cluster manager does: a plain core-NATS
// publish on its own connection.
func (c *cluster) publish(subject string, v any) {
	c.t.Helper()
	nc, err := natsgo.Connect(c.nats.URL())
	if err != nil {
		c.t.Fatalf("connect to nats: %v", err)
	}
	defer nc.Close()
	data, _ := json.Marshal(v)
	if err := nc.Publish(subject, data); err != nil {
		c.t.Fatalf("publish: %v", err)
	}
	if err := nc.Flush(); err != nil {
		c.t.Fatalf("flush: %v", err)
	}
}

// dumpKeys is etcd's keys for a failure message, in order.
func dumpKeys(kvs map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(kvs)) {
		v := kvs[k]
		if strings.HasSuffix(k, "/metadata") {
			// A storage's metadata holds its credentials: never in a
			// test's output either.
			v = fmt.Sprintf("(%d bytes of storage metadata, not shown)", len(v))
		}
		b.WriteString("  " + k + " = " + v + "\n")
	}
	return b.String()
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// revision is etcd's current revision.
func (c *cluster) revision() int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.cli.Get(ctx, "revision-probe")
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.Header.Revision
}

// history returns every value put at key after rev, oldest first.
func (c *cluster) history(key string, rev int64) []string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w := c.cli.Watch(ctx, key, clientv3.WithRev(rev+1))
	now := c.revision()
	var out []string
	for resp := range w {
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypePut {
				out = append(out, string(ev.Kv.Value))
			}
		}
		if resp.Header.Revision >= now || resp.Err() != nil {
			break
		}
	}
	return out
}

// revokeLeaseOf revokes the lease holding key: the session that wrote it
// ends at once, server-side.
func (c *cluster) revokeLeaseOf(key string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) == 0 || resp.Kvs[0].Lease == 0 {
		c.t.Fatalf("no lease holds %s (err %v)", key, err)
	}
	if _, err := c.cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		c.t.Fatalf("revoke: %v", err)
	}
}
