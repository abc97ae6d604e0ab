package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/adapters/fake"
	"github.com/cdmdr/mirror/app"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// BenchmarkTenThousandVolumes measures mirrord on an embedded etcd with
// MIRROR_BENCH_VOLUMES mirror volumes (default 10,000), all mirroring:
//
//   - op_to_backend: time from putting an operation key to the backend
//     call it causes, p50/p99, beside the bare etcd watch delivery latency
//     (put to watch event) measured in the same run the same way;
//   - steady: with nothing changing, etcd requests per second, the
//     daemon's CPU and memory;
//   - restart: time until every volume is owned again after a graceful
//     restart of the daemon.
//
// Run: go test -run '^$' -bench TenThousandVolumes -benchtime 1x -timeout 60m ./cmd/mirrord/
func BenchmarkTenThousandVolumes(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("MIRROR_BENCH_VOLUMES")); err == nil && v > 0 {
		n = v
	}
	steadyWindow := app.DefaultResyncInterval + 5*time.Second // one resync inside
	if v, err := time.ParseDuration(os.Getenv("MIRROR_BENCH_STEADY")); err == nil {
		steadyWindow = v
	}
	c := newBenchCluster(b)
	backend := newTimedBackend()
	backends := fake.NewBackends(map[string]ports.StorageBackend{cephType: backend})

	c.seedStorages()
	c.seedEnvironment("start")
	seedStart := time.Now()
	c.seedVolumes(b, n, backend.Backend)
	b.Logf("seeded %d volumes in %s", n, time.Since(seedStart))

	baseCPU, baseRSS := cpuTime(), rss()
	baseHeap, baseGoroutines := heapInuse(), runtime.NumGoroutine()
	baseReq := etcdRequests()
	time.Sleep(5 * time.Second)
	idleReqRate := (etcdRequests() - baseReq) / 5
	idleCPU := (cpuTime() - baseCPU).Seconds() / 5

	start := time.Now()
	d := c.startWith(b, "bench-1", backends)
	c.waitCount(b, "mirroring", 30*time.Minute, func() bool { return backend.started() >= n && c.countStatus(b, core.StateMirroring) >= n })
	b.ReportMetric(time.Since(start).Seconds(), "s_first_convergence")
	b.Logf("first convergence of %d volumes: %s", n, time.Since(start))

	// Latency: operation put → backend call, beside bare watch delivery.
	const samples = 200
	var opLat, watchLat []time.Duration
	watchCh := c.cli.Watch(context.Background(), "bench/watch/", clientv3.WithPrefix())
	for i := 0; i < samples; i++ {
		vol := uint64(i*(n/samples) + 1)
		ref := core.VolumeRef{Env: seedEnv, VolumeID: vol}
		called := backend.expect("PauseVolume", uuidFor(vol))
		t0 := time.Now()
		c.putB(b, core.VolumeOperationKey(ref), `{"operation":"pause"}`)
		select {
		case at := <-called:
			opLat = append(opLat, at.Sub(t0))
		case <-time.After(30 * time.Second):
			b.Fatalf("no PauseVolume for volume %d within 30s", vol)
		}

		t0 = time.Now()
		c.putB(b, "bench/watch/"+strconv.Itoa(i), "x")
		select {
		case <-watchCh:
			watchLat = append(watchLat, time.Since(t0))
		case <-time.After(30 * time.Second):
			b.Fatal("no watch event within 30s")
		}
	}
	report(b, "op_to_backend", opLat)
	report(b, "bare_watch", watchLat)

	// Steady state: nothing changes for a while.
	c.waitCount(b, "sampled volumes paused", 5*time.Minute, func() bool { return c.countStatus(b, core.StatePaused) >= samples })
	time.Sleep(3 * time.Second)
	runtime.GC()
	req0, cpu0 := etcdRequests(), cpuTime()
	if path := os.Getenv("MIRROR_BENCH_CPUPROFILE"); path != "" {
		stop := startCPUProfile(b, path)
		time.Sleep(steadyWindow)
		stop()
	} else {
		time.Sleep(steadyWindow)
	}
	reqRate := (etcdRequests()-req0)/steadyWindow.Seconds() - idleReqRate
	cpu := (cpuTime()-cpu0).Seconds()/steadyWindow.Seconds() - idleCPU
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(reqRate, "etcd_req/s_steady")
	b.ReportMetric(cpu*100, "cpu%_steady")
	b.ReportMetric(float64(rss()-baseRSS)/(1<<20), "MiB_rss_added")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "MiB_heap_inuse")
	b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
	// The daemon's own heap per volume: what it added to the process
	// after the volumes were seeded in etcd (which holds them as well),
	// the scripted backend's record of each replication included.
	heapPerVolume := float64(heapInuse()-baseHeap) / float64(n)
	b.ReportMetric(heapPerVolume, "B_heap/volume")
	b.ReportMetric(float64(runtime.NumGoroutine()-baseGoroutines), "goroutines_added")
	b.Logf("steady over %s: %.1f etcd req/s, %.1f%% of a core (process minus idle etcd+NATS), RSS +%d MiB, heap in use %d MiB (+%.0f B per volume), %d goroutines (+%d for the daemon)",
		steadyWindow, reqRate, cpu*100, (rss()-baseRSS)>>20, ms.HeapInuse>>20, heapPerVolume, runtime.NumGoroutine(), runtime.NumGoroutine()-baseGoroutines)

	// Restart: a graceful stop resigns every lead; a new daemon owns all.
	// What the stop frees is the daemon's own memory (its cache,
	// leaderships, queue), without etcd's or the scripted backend's.
	heapLeading := heapInuse()
	d.stop()
	ownPerVolume := float64(heapLeading-heapInuse()) / float64(n)
	b.ReportMetric(ownPerVolume, "B_daemon_heap/volume")
	b.Logf("the daemon's own heap: %.0f B per volume (freed by stopping it)", ownPerVolume)
	if left := c.countPrefix(b, "mirror_leader/mirror_volume/"); left != 0 {
		b.Fatalf("%d leader keys left after a graceful stop", left)
	}
	start = time.Now()
	d2 := c.startWith(b, "bench-2", backends)
	c.waitCount(b, "every volume owned", 30*time.Minute, func() bool { return c.countPrefix(b, "mirror_leader/mirror_volume/") >= n })
	owned := time.Since(start)
	b.ReportMetric(owned.Seconds(), "s_owned_after_restart")
	b.Logf("every volume owned again %s after the restart", owned)
	d2.stop()
}

func report(b *testing.B, name string, d []time.Duration) {
	slices.Sort(d)
	p := func(q float64) time.Duration { return d[int(q*float64(len(d)-1))] }
	b.ReportMetric(float64(p(0.50).Microseconds())/1000, "ms_p50_"+name)
	b.ReportMetric(float64(p(0.99).Microseconds())/1000, "ms_p99_"+name)
	b.Logf("%s: p50 %s p99 %s (n=%d)", name, p(0.50), p(0.99), len(d))
}

// etcdRequests sums the gRPC messages the embedded etcd server received
// (unary requests and every message on streams: watch, lease keep-alive).
func etcdRequests() float64 {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		return 0
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "grpc_server_msg_received_total" {
			for _, m := range mf.Metric {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// startCPUProfile profiles the process into path (the steady window,
// with MIRROR_BENCH_CPUPROFILE).
func startCPUProfile(b *testing.B, path string) (stop func()) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// heapInuse is the heap in use after a collection.
func heapInuse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rss() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// timedBackend is the scripted backend, recording when calls arrive.
type timedBackend struct {
	*fake.Backend
	mu      sync.Mutex
	waiting map[string]chan time.Time
	starts  int
}

func newTimedBackend() *timedBackend {
	b := &timedBackend{Backend: fake.NewBackend(cephType), waiting: map[string]chan time.Time{}}
	b.AutoSync(true)
	return b
}

func (b *timedBackend) expect(method, uuid string) <-chan time.Time {
	ch := make(chan time.Time, 1)
	b.mu.Lock()
	b.waiting[method+" "+uuid] = ch
	b.mu.Unlock()
	return ch
}

func (b *timedBackend) note(method, uuid string) {
	at := time.Now()
	b.mu.Lock()
	if ch, ok := b.waiting[method+" "+uuid]; ok {
		delete(b.waiting, method+" "+uuid)
		ch <- at
	}
	b.mu.Unlock()
}

func (b *timedBackend) started() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.starts
}

func (b *timedBackend) StartVolume(ctx context.Context, v ports.Volume) error {
	err := b.Backend.StartVolume(ctx, v)
	if err == nil {
		b.mu.Lock()
		b.starts++
		b.mu.Unlock()
	}
	return err
}

func (b *timedBackend) PauseVolume(ctx context.Context, v ports.Volume) error {
	b.note("PauseVolume", v.VolumeUUID)
	return b.Backend.PauseVolume(ctx, v)
}

// benchCluster is cluster for benchmarks: embedded etcd and NATS, and a
// client playing the DR manager.
type benchCluster struct{ *cluster }

func newBenchCluster(b *testing.B) benchCluster {
	return benchCluster{newClusterTB(b)}
}

func (c benchCluster) startWith(b *testing.B, id string, backends ports.Backends) *daemon {
	b.Helper()
	cfg := defaultConfig()
	cfg.DaemonID = id
	cfg.Etcd.Endpoints = c.etcd.Endpoints()
	cfg.NATS.URL = c.nats.URL()
	cfg.HTTPAddress = "" // several daemons per benchmark
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	dm, cleanup, err := initDaemonWith(ctx, cfg, log, backends)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	d := &daemon{id: id, logs: &syncBuffer{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		d.err = dm.Engine.Run(ctx)
		cleanup()
		close(d.done)
	}()
	b.Cleanup(d.stop)
	return d
}

// seedVolumes writes n volumes with operation start, 50 per transaction.
func (c benchCluster) seedVolumes(b *testing.B, n int, backend *fake.Backend) {
	b.Helper()
	var ops []clientv3.Op
	flush := func() {
		if len(ops) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := c.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			b.Fatalf("seed: %v", err)
		}
		ops = ops[:0]
	}
	for i := 1; i <= n; i++ {
		id := uint64(i)
		backend.AddSourceVolume(uuidFor(id))
		ref := core.VolumeRef{Env: seedEnv, VolumeID: id}
		ops = append(ops,
			clientv3.OpPut(core.VolumeKey(ref), fmt.Sprintf(`{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":%d,"volume_uuid":"%s"},"source_agent":{"ip":"192.168.137.101","port":8080}}`, id, uuidFor(id))),
			clientv3.OpPut(core.VolumeOperationKey(ref), `{"operation":"start"}`))
		if len(ops) >= 100 {
			flush()
		}
	}
	flush()
}

func (c benchCluster) putB(b *testing.B, key, value string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.cli.Put(ctx, key, value); err != nil {
		b.Fatalf("put %s: %v", key, err)
	}
}

func (c benchCluster) countPrefix(b *testing.B, prefix string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		b.Fatalf("count %s: %v", prefix, err)
	}
	return int(resp.Count)
}

// countStatus counts volume statuses in state s.
func (c benchCluster) countStatus(b *testing.B, s core.State) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.cli.Get(ctx, core.EnvironmentVolumesPrefix(seedEnv), clientv3.WithPrefix())
	if err != nil {
		b.Fatalf("list: %v", err)
	}
	n := 0
	want := `"state_code":"` + string(s) + `"`
	for _, kv := range resp.Kvs {
		if strings.HasSuffix(string(kv.Key), "/status") && strings.Contains(string(kv.Value), want) {
			n++
		}
	}
	return n
}

func (c benchCluster) waitCount(b *testing.B, what string, within time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
