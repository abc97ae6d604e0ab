package pluginhost

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/memstorage"
)

// BenchmarkPluginCall measures one VolumeStatus round trip of a replicated
// volume, the test plugin's memstorage answering, by five paths in the
// same run:
//
//   - floor: the fair floor. Bare gRPC (the SDK's client stub on a
//     grpc.ClientConn) to the test plugin run as a second process serving
//     the same gRPC service without go-plugin, on a unix socket, with
//     mutual TLS configured as go-plugin's AutoMTLS configures it
//     (self-signed ECDSA P-521 certificates, each side trusting only the
//     other's).
//   - goplugin: go-plugin's own client, configured as the host configures
//     it (AutoMTLS, checksum, gRPC), the backend it dispenses called
//     directly, without the host.
//   - host: the daemon's path: Host.For's backend, through the host's
//     wrapper, to the plugin process.
//   - plain, for reference: the floor without TLS, to tell what TLS costs
//     from what the second process costs.
//   - inproc, for reference: what this benchmark used to compare the host
//     with: bare gRPC on a unix socket to a server in this same process,
//     without TLS.
//
// The interleaved sub-benchmark calls the paths in turn, one call each per
// round in a random order, so that the load of a shared machine weighs
// on all alike; it reports each path's p50 and p99, and the host's and
// go-plugin's ratios to the floor. The single-path sub-benchmarks are for
// profiling one path alone (-cpuprofile); their figures are only
// comparable within one quiet run.
func BenchmarkPluginCall(b *testing.B) {
	b.Run("interleaved", func(b *testing.B) {
		paths := []benchPath{
			{"floor", floorCall(b)},
			{"goplugin", goPluginCall(b)},
			{"host", hostCall(b)},
			{"plain", plainCall(b)},
			{"inproc", inprocCall(b)},
		}
		for _, p := range paths {
			warmUp(b, p.call)
		}
		lat := make([][]time.Duration, len(paths))
		order := make([]int, len(paths))
		for i := range order {
			order[i] = i
		}
		ctx := b.Context()
		for b.Loop() {
			// A call is faster right after one to the same process:
			// no path may always follow the same other.
			mrand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for _, j := range order {
				begin := time.Now()
				if _, err := paths[j].call(ctx); err != nil {
					b.Fatalf("%s: %v", paths[j].name, err)
				}
				lat[j] = append(lat[j], time.Since(begin))
			}
		}
		b.StopTimer()
		p50, p99 := make([]float64, len(paths)), make([]float64, len(paths))
		for i, p := range paths {
			p50[i], p99[i] = report(b, p.name+"-", lat[i])
		}
		b.ReportMetric(p50[2]/p50[0], "host/floor-p50")
		b.ReportMetric(p99[2]/p99[0], "host/floor-p99")
		b.ReportMetric(p50[1]/p50[0], "goplugin/floor-p50")
	})
	b.Run("floor", func(b *testing.B) { measure(b, floorCall(b)) })
	b.Run("goplugin", func(b *testing.B) { measure(b, goPluginCall(b)) })
	b.Run("host", func(b *testing.B) { measure(b, hostCall(b)) })
}

// BenchmarkPluginWrapper measures the host's own work per call, which the
// process boundary drowns in BenchmarkPluginCall: VolumeStatus of a
// memstorage in this process, called directly, and through the host's
// wrapper (call timeout, lookup of the running process, state check) as
// if the memstorage were a plugin's dispensed backend.
func BenchmarkPluginWrapper(b *testing.B) {
	mem := memstorage.New(memstorage.Types(exampleType), memstorage.AutoSource())
	m := newManaged(New(Config{}, nil), "/nonexistent/example", nil)
	m.cur = &instance{client: &plugin.Client{}, be: mem}
	for _, p := range []struct {
		name string
		be   sdk.Backend
	}{{"direct", mem}, {"wrapper", m.port}} {
		b.Run(p.name, func(b *testing.B) {
			call := backendCall(b, p.be)
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := call(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestBenchmarkPaths checks that every path BenchmarkPluginCall measures
// works, and answers what the host answers, so that the benchmark does not
// rot unnoticed (benchmarks are not run with the tests).
func TestBenchmarkPaths(t *testing.T) {
	for _, p := range []benchPath{
		{"floor", floorCall(t)},
		{"goplugin", goPluginCall(t)},
		{"host", hostCall(t)},
		{"plain", plainCall(t)},
		{"inproc", inprocCall(t)},
	} {
		r, err := p.call(t.Context())
		if err != nil {
			t.Fatalf("%s: VolumeStatus: %v", p.name, err)
		}
		if !r.TargetExists || (r.State != sdk.ReplicationSyncing && r.State != sdk.ReplicationReplaying) {
			t.Errorf("%s: VolumeStatus of a started volume = %+v, want it syncing or replaying to an existing target", p.name, r)
		}
	}
}

// benchPath is one way of calling VolumeStatus of a replicated volume.
type benchPath struct {
	name string
	call func(context.Context) (sdk.VolumeReplication, error)
}

// hostCall starts a host on a directory holding the test plugin and
// returns a VolumeStatus through it.
func hostCall(t testing.TB) func(context.Context) (sdk.VolumeReplication, error) {
	dir := t.TempDir()
	writeBenchPlugin(t, dir)
	host := startHost(t, Config{Dir: dir}, nil)
	be, err := host.For(t.Context(), exampleType)
	if err != nil {
		t.Fatal(err)
	}
	return backendCall(t, be)
}

// goPluginCall starts the test plugin with go-plugin's client configured
// as the host configures it, and returns a VolumeStatus through the
// backend go-plugin dispenses.
func goPluginCall(t testing.TB) func(context.Context) (sdk.VolumeReplication, error) {
	path := writeBenchPlugin(t, t.TempDir())
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	cmd := exec.Command(path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.PluginSets(nil),
		Cmd:              cmd,
		SecureConfig:     &plugin.SecureConfig{Checksum: sum[:], Hash: sha256.New()},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		Logger:           newHCLogger(slog.New(slog.DiscardHandler), ""),
	})
	t.Cleanup(client.Kill)
	proto, err := client.Client()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := proto.Dispense(sdk.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return backendCall(t, raw.(sdk.Backend))
}

// floorCall starts the test plugin serving its gRPC service without
// go-plugin, on a unix socket with mutual TLS, connects to it as
// go-plugin's client would, and returns a VolumeStatus over that
// connection.
func floorCall(t testing.TB) func(context.Context) (sdk.VolumeReplication, error) {
	dir := t.TempDir()
	serverCert, serverKey := selfSignedCert(t)
	clientCert, clientKey := selfSignedCert(t)
	for name, data := range map[string][]byte{"server.crt": serverCert, "server.key": serverKey, "client.crt": clientCert} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	startRawPlugin(t, "rawmtls", dir)
	cert, err := tls.X509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	servers := x509.NewCertPool()
	servers.AppendCertsFromPEM(serverCert)
	return rawCall(t, dir, credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      servers,
		MinVersion:   tls.VersionTLS12,
		ServerName:   "localhost",
	}))
}

// plainCall is floorCall without TLS.
func plainCall(t testing.TB) func(context.Context) (sdk.VolumeReplication, error) {
	dir := t.TempDir()
	startRawPlugin(t, "rawplain", dir)
	return rawCall(t, dir, insecure.NewCredentials())
}

// startRawPlugin starts the test plugin in mode rawmtls or rawplain on
// dir, stopped when the test ends, and waits until it listens.
func startRawPlugin(t testing.TB, mode, dir string) {
	cmd := exec.Command(testPlugin, "-mode="+mode, "-types="+exampleType, "-raw-dir="+dir)
	stdin, err := cmd.StdinPipe() // closed at cleanup: the plugin then exits
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("test plugin -mode=%s: %v", mode, err)
		}
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("test plugin -mode=%s said %q (%v), not ready", mode, line, err)
	}
}

// rawCall connects to the test plugin started on dir by startRawPlugin
// and returns a VolumeStatus over that connection.
func rawCall(t testing.TB, dir string, creds credentials.TransportCredentials) func(context.Context) (sdk.VolumeReplication, error) {
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "plugin.sock"), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return backendCall(t, sdk.NewGRPCClient(conn))
}

// inprocCall serves memstorage's gRPC service in this process on a unix
// socket without TLS, and returns a VolumeStatus over a connection to it.
func inprocCall(t testing.TB) func(context.Context) (sdk.VolumeReplication, error) {
	srv := grpc.NewServer()
	if err := (&sdk.BackendPlugin{Impl: memstorage.New(memstorage.Types(exampleType), memstorage.AutoSource())}).GRPCServer(nil, srv); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "plugin.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis) //nolint:errcheck // ends with Stop
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return backendCall(t, sdk.NewGRPCClient(conn))
}

// backendCall starts replicating a fresh volume on be and returns its
// VolumeStatus.
func backendCall(t testing.TB, be sdk.Backend) func(context.Context) (sdk.VolumeReplication, error) {
	env, vol, _ := fixture(exampleType)
	if err := be.PrepareEnvironment(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	if err := be.StartVolume(t.Context(), vol); err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context) (sdk.VolumeReplication, error) { return be.VolumeStatus(ctx, vol) }
}

// selfSignedCert makes a certificate as go-plugin's AutoMTLS makes one for
// each side: self-signed and its own CA, ECDSA P-521, for "localhost". It
// returns the certificate and its key in PEM.
func selfSignedCert(t testing.TB) (certPEM, keyPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SerialNumber:          sn,
		NotBefore:             time.Now().Add(-30 * time.Second),
		NotAfter:              time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// writeBenchPlugin puts the test plugin in dir: a script, as in the
// tests, exec'ing the binary, so the process measured is the plugin.
func writeBenchPlugin(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "example")
	if err := writeFile(path, "#!/bin/sh\nexec "+testPlugin+" -types="+exampleType+"\n"); err != nil {
		t.Fatal(err)
	}
	return path
}

// warmUp makes a few calls, to set up connections and fill caches.
func warmUp(b *testing.B, call func(context.Context) (sdk.VolumeReplication, error)) {
	for range 100 {
		if _, err := call(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}

// measure runs call b.N times and reports the median and 99th percentile
// latency of one call.
func measure(b *testing.B, call func(context.Context) (sdk.VolumeReplication, error)) {
	warmUp(b, call)
	ctx := b.Context()
	var lat []time.Duration
	for b.Loop() {
		begin := time.Now()
		if _, err := call(ctx); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(begin))
	}
	b.StopTimer()
	report(b, "", lat)
}

// report reports the median and 99th percentile of lat, in µs, under the
// metric names prefix+"p50-µs" and prefix+"p99-µs", and returns them.
func report(b *testing.B, prefix string, lat []time.Duration) (p50, p99 float64) {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3
	}
	p50, p99 = pct(0.50), pct(0.99)
	b.ReportMetric(p50, prefix+"p50-µs")
	b.ReportMetric(p99, prefix+"p99-µs")
	return p50, p99
}
