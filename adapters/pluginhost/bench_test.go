package pluginhost

import (
	"context"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/memstorage"
)

// BenchmarkPluginCall measures a VolumeStatus round trip through the
// host's wrapper to a plugin process (go-plugin, mutual TLS, a unix
// socket), beside the same call over a bare gRPC connection on a unix
// socket to the same backend served in-process: what the process
// boundary, TLS and the wrapper cost.
func BenchmarkPluginCall(b *testing.B) {
	b.Run("host", func(b *testing.B) {
		dir := b.TempDir()
		writeBenchPlugin(b, dir)
		host := startHost(b, Config{Dir: dir}, nil)
		be, err := host.For(b.Context(), exampleType)
		if err != nil {
			b.Fatal(err)
		}
		env, vol, _ := fixture(exampleType)
		if err := be.PrepareEnvironment(b.Context(), env); err != nil {
			b.Fatal(err)
		}
		if err := be.StartVolume(b.Context(), vol); err != nil {
			b.Fatal(err)
		}
		measure(b, func(ctx context.Context) error { _, err := be.VolumeStatus(ctx, vol); return err })
	})
	b.Run("grpc-unix", func(b *testing.B) {
		srv := grpc.NewServer()
		if err := (&sdk.BackendPlugin{Impl: memstorage.New(memstorage.Types(exampleType))}).GRPCServer(nil, srv); err != nil {
			b.Fatal(err)
		}
		sock := filepath.Join(b.TempDir(), "plugin.sock")
		lis, err := net.Listen("unix", sock)
		if err != nil {
			b.Fatal(err)
		}
		go srv.Serve(lis) //nolint:errcheck // ends with Stop
		defer srv.Stop()
		conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		be := sdk.NewGRPCClient(conn)
		env, vol, _ := fixture(exampleType)
		if err := be.PrepareEnvironment(b.Context(), env); err != nil {
			b.Fatal(err)
		}
		if err := be.StartVolume(b.Context(), vol); err != nil {
			b.Fatal(err)
		}
		measure(b, func(ctx context.Context) error { _, err := be.VolumeStatus(ctx, vol); return err })
	})
}

// writeBenchPlugin puts the test plugin in dir: a script, as in the
// tests, exec'ing the binary, so the process measured is the plugin.
func writeBenchPlugin(b *testing.B, dir string) {
	b.Helper()
	path := filepath.Join(dir, "example")
	if err := writeFile(path, "#!/bin/sh\nexec "+testPlugin+" -types="+exampleType+"\n"); err != nil {
		b.Fatal(err)
	}
}

// measure runs call b.N times and reports the median and 99th percentile
// latency of one call.
func measure(b *testing.B, call func(context.Context) error) {
	ctx := b.Context()
	for range 100 { // warm up connections and caches
		if err := call(ctx); err != nil {
			b.Fatal(err)
		}
	}
	durations := make([]time.Duration, 0, b.N)
	for b.Loop() {
		begin := time.Now()
		if err := call(ctx); err != nil {
			b.Fatal(err)
		}
		durations = append(durations, time.Since(begin))
	}
	b.StopTimer()
	slices.Sort(durations)
	pct := func(p float64) float64 {
		return float64(durations[int(p*float64(len(durations)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
