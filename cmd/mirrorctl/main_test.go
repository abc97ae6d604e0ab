package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/cdmdr/mirror/adapters/etcd/etcdtest"
	"github.com/cdmdr/mirror/test/secretscan"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// now is the tests' clock: statuses are written relative to it.
var now = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

// fixture is a real etcd on loopback and a plain client playing the DR
// manager, the cluster manager and the daemons.
type fixture struct {
	t   *testing.T
	srv *etcdtest.Server
	cli *clientv3.Client
	// secrets scans mirrorctl's output and etcd for the test secrets
	// (secrets_test.go); scanCli reads etcd for it once auth is on.
	secrets *secretscan.Scanner
	scanCli *clientv3.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := etcdtest.Start(t)
	f := &fixture{t: t, srv: srv, cli: srv.Client(t)}
	f.watchSecrets()
	return f
}

// result is what one mirrorctl run printed and returned.
type result struct {
	code           int
	stdout, stderr string
}

// run runs mirrorctl against the fixture's etcd.
func (f *fixture) run(args ...string) result {
	f.t.Helper()
	return f.runCtx(f.t.Context(), nil, args...)
}

func (f *fixture) runCtx(ctx context.Context, stdout *syncBuffer, args ...string) result {
	f.t.Helper()
	if stdout == nil {
		stdout = &syncBuffer{}
	}
	return f.runWith(ctx, strings.NewReader(""), stdout, args...)
}

// runWith runs mirrorctl reading stdin.
func (f *fixture) runWith(ctx context.Context, stdin io.Reader, stdout *syncBuffer, args ...string) result {
	f.t.Helper()
	var stderr syncBuffer
	e := &env{getenv: func(string) string { return "" }, stdin: stdin, stdout: stdout, stderr: &stderr,
		now: func() time.Time { return now }}
	args = append(args, "--etcd-endpoints", strings.Join(f.srv.Endpoints(), ","), "--etcd-dial-timeout", "10s")
	code := e.run(ctx, args)
	f.secrets.ScanString(sprintf("the output of mirrorctl %s", strings.Join(args, " ")), stdout.String())
	f.secrets.ScanString(sprintf("the errors of mirrorctl %s", strings.Join(args, " ")), stderr.String())
	return result{code, stdout.String(), stderr.String()}
}

func (f *fixture) put(key, value string, opts ...clientv3.OpOption) {
	f.t.Helper()
	if _, err := f.cli.Put(f.t.Context(), key, value, opts...); err != nil {
		f.t.Fatalf("put %s: %v", key, err)
	}
}

func (f *fixture) get(key string) (string, bool) {
	f.t.Helper()
	resp, err := f.cli.Get(f.t.Context(), key)
	if err != nil {
		f.t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return "", false
	}
	return string(resp.Kvs[0].Value), true
}

func (f *fixture) revision() int64 {
	f.t.Helper()
	resp, err := f.cli.Get(f.t.Context(), "x")
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.Header.Revision
}

// all returns every key in etcd with its value.
func (f *fixture) all() map[string]string {
	f.t.Helper()
	resp, err := f.cli.Get(f.t.Context(), "\x00", clientv3.WithFromKey())
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

// lease grants a lease that outlives the test, as a daemon's session.
func (f *fixture) lease() clientv3.LeaseID {
	f.t.Helper()
	l, err := f.cli.Grant(f.t.Context(), 600)
	if err != nil {
		f.t.Fatal(err)
	}
	return l.ID
}

const (
	storageRecord = `{"cluster_id":%d,"storage_id":%d,"type":"openstack.storage.type.example","backend_name":"example"}`
	envRecord     = `{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13}}`
	volRecord     = `{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":%d,"volume_uuid":"00000000-0000-4000-8000-%012d"}}`
)

func ts(d time.Duration) string { return now.Add(-d).Format(time.RFC3339Nano) }

// seed writes a healthy site: two storages, environment storage.11.13
// mirroring, volume 7 initializing at 42%, volume 8 paused, a snapshot
// of volume 7; all led by daemon d1, alive on its lease.
func (f *fixture) seed() {
	f.t.Helper()
	for _, s := range [][2]int{{5, 11}, {6, 13}} {
		key := sprintf("clusters/%d/storages/%d", s[0], s[1])
		f.put(key, sprintf(storageRecord, s[0], s[1]))
		f.put(key+"/metadata", metadataWithKeyring)
	}
	lease := f.lease()
	f.put("mirror_leader/daemons/d1", "d1", clientv3.WithLease(lease))
	f.put("mirror_environment/storage.11.13", envRecord)
	f.put("mirror_environment/storage.11.13/operation", `{"operation":"start"}`)
	f.put("mirror_environment/storage.11.13/status", `{"state_code":"mirroring","operation":"start","owner":"d1","updated_at":"`+ts(3*time.Hour)+`"}`)
	f.put("mirror_leader/mirror_environment/storage.11.13", "d1", clientv3.WithLease(lease))
	f.seedVolume(7, "start", `{"state_code":"initializing","operation":"start","progress":42,"owner":"d1","updated_at":"`+ts(90*time.Second)+`"}`, lease)
	f.seedVolume(8, "pause", `{"state_code":"paused","operation":"pause","last_sync_time":"`+ts(5*time.Minute)+`","lag":"3s","owner":"d1","updated_at":"`+ts(10*time.Minute)+`"}`, lease)
	f.put("mirror_volume/storage.11.13/volume.7/snapshot.21", `{"cluster_id":5,"volume_id":7,"volume_uuid":"00000000-0000-4000-8000-000000000007","snapshot_id":21,"snapshot_uuid":"5f0c3ad2-8d6b-4e53-9a55-2b7f0a4c9e10","snapshot_name":"daily-1"}`)
	f.put("mirror_volume/storage.11.13/volume.7/snapshot.21/status", `{"state_code":"mirrored","owner":"d1","updated_at":"`+ts(time.Minute)+`"}`)
}

func (f *fixture) seedVolume(id int, op, status string, lease clientv3.LeaseID) {
	key := sprintf("mirror_volume/storage.11.13/volume.%d", id)
	f.put(key, sprintf(volRecord, id, id))
	f.put(key+"/operation", `{"operation":"`+op+`"}`)
	if status != "" {
		f.put(key+"/status", status)
	}
	if lease != 0 {
		f.put("mirror_leader/"+key, "d1", clientv3.WithLease(lease))
	}
}

// syncBuffer is a bytes.Buffer safe for a command writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually polls cond (a state of etcd or of output, never the absence
// of something) until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }
