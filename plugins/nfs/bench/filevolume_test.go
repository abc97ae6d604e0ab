package bench

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/nfs/agent"
	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
	"github.com/cdmdr/mirror/plugins/nfs/deltasync"
	"github.com/cdmdr/mirror/plugins/nfs/internal/testpki"
)

const (
	volSize   = 1 << 30
	blockSize = 64 << 10
	volName   = "volume-bench"
	token     = "bench-token"
)

// BenchmarkFileVolume measures, in one run and on one file system: the
// first copy of a 1 GiB file of random data through the agent (plain HTTP,
// as the plugin runs by default, and TLS) next to cp followed by a sync of
// the file, and next to a raw copy over loopback TCP (sendfile, read,
// write, fsync: no protocol); then a delta sync
// of 1 % of its 64 KiB blocks changed at random next to rsync --inplace
// --no-whole-file pulling from an rsync daemon on loopback. Run it once
// (-benchtime 1x); MIRROR_BENCH_SEED fixes the changed blocks.
func BenchmarkFileVolume(b *testing.B) {
	if b.N > 1 {
		b.Skip("run once: -benchtime 1x")
	}
	rsync, err := exec.LookPath("rsync")
	if err != nil {
		b.Fatal("rsync is not installed: run `.ci/install-packages rsync` (make bench-nfs does)")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("MIRROR_BENCH_SEED"); s != "" {
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			b.Fatalf("MIRROR_BENCH_SEED: %v", err)
		}
	}
	report(b, "load average at start: %s", loadavg())
	report(b, "seed %d (MIRROR_BENCH_SEED=%d repeats the changed blocks)", seed, seed)

	base := b.TempDir()
	src := mkdir(b, base, "source")
	srcFile := filepath.Join(src, volName)
	writeRandomFile(b, srcFile, seed)

	pki := testpki.New(b)
	addrHTTP := serveAgent(b, src, nil)
	serverTLS, err := agent.TLSConfig(pki.CertFile, pki.KeyFile, "")
	if err != nil {
		b.Fatal(err)
	}
	addrTLS := serveAgent(b, src, serverTLS)
	rsyncURL := startRsyncDaemon(b, rsync, base, src)

	// First copy. The source is read into the page cache before each
	// copy (the cache cannot be dropped here), the targets are cold files.
	cpDir := mkdir(b, base, "cp")
	warm(b, srcFile)
	cpTime := timeCmd(b, "cp", "--reflink=never", srcFile, filepath.Join(cpDir, volName))
	cpTime += timeCmd(b, "sync", filepath.Join(cpDir, volName))

	rawDir := mkdir(b, base, "raw")
	warm(b, srcFile)
	raw := rawCopy(b, srcFile, filepath.Join(rawDir, volName))
	os.RemoveAll(rawDir)

	oursDir := mkdir(b, base, "ours")
	warm(b, srcFile)
	ours, first := firstCopy(b, oursDir, agentproto.ClientConfig{Address: addrHTTP, Token: []byte(token)})
	defer ours.Close()

	tlsDir := mkdir(b, base, "ours-tls")
	warm(b, srcFile)
	clientTLS := &tls.Config{RootCAs: pki.CAPool, ServerName: "127.0.0.1"}
	c, firstTLS := firstCopy(b, tlsDir, agentproto.ClientConfig{Address: addrTLS, Token: []byte(token), TLS: clientTLS})
	c.Close()
	os.RemoveAll(tlsDir)

	mbs := func(d time.Duration) float64 { return volSize / 1e6 / d.Seconds() }
	report(b, "first copy of 1 GiB (source warm in the page cache, every copy fsynced):")
	report(b, "  cp + sync FILE               %6.2f s  %6.0f MB/s", cpTime.Seconds(), mbs(cpTime))
	report(b, "  raw loopback TCP copy        %6.2f s  %6.0f MB/s  %.2fx cp (sendfile, read and write 1 MiB at a time, fsync)",
		raw.Seconds(), mbs(raw), cpTime.Seconds()/raw.Seconds())
	report(b, "  ours, HTTP                   %6.2f s  %6.0f MB/s  %.2fx cp (first copy %.2f s, catch-up delta %.0f ms)",
		first.Duration.Seconds(), mbs(first.Duration), cpTime.Seconds()/first.Duration.Seconds(),
		first.FirstCopyDuration.Seconds(), (first.Duration-first.FirstCopyDuration).Seconds()*1e3)
	report(b, "  ours, TLS                    %6.2f s  %6.0f MB/s  %.2fx cp", firstTLS.Duration.Seconds(), mbs(firstTLS.Duration), cpTime.Seconds()/firstTLS.Duration.Seconds())
	report(b, "  ours over HTTP is %.2fx the raw copy", raw.Seconds()/first.Duration.Seconds())

	// Delta sync: both targets hold the source as it is now (ours made by
	// the first copy, rsync's by cp); change 1 % of the source's blocks.
	changed := changeBlocks(b, srcFile, seed)
	changedBytes := int64(changed) * blockSize

	client, err := agentproto.NewClient(agentproto.ClientConfig{Address: addrHTTP, Token: []byte(token)})
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	b.ResetTimer()
	start := time.Now()
	res, err := ours.Sync(b.Context(), client)
	oursTime := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	got := client.Received()
	oursBytes := got.Sums + got.Blocks

	// The agent's sums of every block, the bulk of a delta sync, alone.
	start = time.Now()
	if _, err := client.Sums(b.Context(), volName, blockSize); err != nil {
		b.Fatal(err)
	}
	sumsTime := time.Since(start)

	rsyncTarget := filepath.Join(cpDir, volName)
	start = time.Now()
	out, err := exec.Command(rsync, "--inplace", "--no-whole-file", "--ignore-times", "--stats", rsyncURL+"/"+volName, rsyncTarget).CombinedOutput()
	rsyncTime := time.Since(start)
	if err != nil {
		b.Fatalf("rsync: %v\n%s", err, out)
	}
	rsyncSync := timeCmd(b, "sync", rsyncTarget)
	rsyncRecv, rsyncSent := statsField(b, out, "Total bytes received"), statsField(b, out, "Total bytes sent")

	want := fileSum(b, srcFile)
	for _, f := range []string{filepath.Join(oursDir, volName), rsyncTarget} {
		if fileSum(b, f) != want {
			b.Fatalf("%s differs from the source after the sync", f)
		}
	}

	report(b, "delta sync of 1 GiB, %d of %d blocks of 64 KiB changed (%d bytes); both targets checked equal to the source:", changed, volSize/blockSize, changedBytes)
	report(b, "  ours (HTTP)                  %6.3f s  received %d bytes (sums %d, blocks %d) = %.3fx the changed bytes; %d blocks fetched",
		oursTime.Seconds(), oursBytes, got.Sums, got.Blocks, float64(oursBytes)/float64(changedBytes), res.BlocksChanged)
	report(b, "    of which the agent's sums of 1 GiB, timed alone right after: %.3f s", sumsTime.Seconds())
	report(b, "  rsync --inplace --no-whole-file  %6.3f s (+ sync FILE %.3f s)  received %d bytes = %.3fx the changed bytes; sent %d",
		rsyncTime.Seconds(), rsyncSync.Seconds(), rsyncRecv, float64(rsyncRecv)/float64(changedBytes), rsyncSent)
	report(b, "  ours is %.1fx faster than rsync (goal >= 2x); bytes %.2fx the changed bytes (goal <= 1.5x); first copy %.2fx cp (goal >= 0.8x)",
		rsyncTime.Seconds()/oursTime.Seconds(), float64(oursBytes)/float64(changedBytes), cpTime.Seconds()/first.Duration.Seconds())
	report(b, "load average at end: %s", loadavg())

	b.ReportMetric(oursTime.Seconds(), "delta-s")
	b.ReportMetric(rsyncTime.Seconds(), "rsync-s")
	b.ReportMetric(float64(oursBytes)/float64(changedBytes), "bytes/changed")
	b.ReportMetric(mbs(first.Duration), "first-copy-MB/s")
	b.ReportMetric(mbs(firstTLS.Duration), "first-copy-tls-MB/s")
	b.ReportMetric(mbs(cpTime), "cp-MB/s")
	b.ReportMetric(mbs(raw), "raw-tcp-MB/s")
}

// rawCopy copies src to dst over a loopback TCP connection with nothing
// else: sendfile into the socket, the receiver reading 1 MiB at a time
// and writing it, then an fsync. No protocol, no sums, no checkpoints:
// what any copy through a network connection costs on this machine.
func rawCopy(b *testing.B, src, dst string) time.Duration {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	sent := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			sent <- err
			return
		}
		defer conn.Close()
		f, err := os.Open(src)
		if err != nil {
			sent <- err
			return
		}
		defer f.Close()
		_, err = io.Copy(conn, f) // sendfile
		sent <- err
	}()
	start := time.Now()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	n, err := io.CopyBuffer(struct{ io.Writer }{out}, conn, make([]byte, 1<<20)) // no splice
	if err == nil {
		err = out.Sync()
	}
	d := time.Since(start)
	if err = errors.Join(err, <-sent); err != nil || n != volSize {
		b.Fatalf("raw copy: %d bytes: %v", n, err)
	}
	return d
}

// report prints a line of the result as the benchmark runs.
func report(b *testing.B, format string, args ...any) {
	b.Helper()
	fmt.Printf(format+"\n", args...)
}

func mkdir(b *testing.B, base, name string) string {
	b.Helper()
	dir := filepath.Join(base, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	return dir
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// writeRandomFile writes volSize bytes of random data (no zero blocks, so
// nothing is sparse) and fsyncs them.
func writeRandomFile(b *testing.B, path string, seed uint64) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	rnd := rand.NewChaCha8(key)
	if _, err := io.CopyN(f, rnd, volSize); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
}

// changeBlocks overwrites 1 % of the file's blocks, chosen at random from
// seed, with random data; it returns how many.
func changeBlocks(b *testing.B, path string, seed uint64) int {
	b.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const blocks = volSize / blockSize
	rnd := rand.New(rand.NewPCG(seed, 0x6d6972726f72))
	chosen := map[int64]bool{}
	buf := make([]byte, blockSize)
	for len(chosen) < blocks/100 {
		i := rnd.Int64N(blocks)
		if chosen[i] {
			continue
		}
		chosen[i] = true
		for j := 0; j < len(buf); j += 8 {
			v := rnd.Uint64() | 1
			for k := range 8 {
				buf[j+k] = byte(v >> (8 * k))
			}
		}
		if _, err := f.WriteAt(buf, i*blockSize); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return len(chosen)
}

// warm reads the file so that it is in the page cache.
func warm(b *testing.B, path string) {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(io.Discard, f); err != nil {
		b.Fatal(err)
	}
}

func fileSum(b *testing.B, path string) [sha256.Size]byte {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		b.Fatal(err)
	}
	return [sha256.Size]byte(h.Sum(nil))
}

func timeCmd(b *testing.B, name string, args ...string) time.Duration {
	b.Helper()
	start := time.Now()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", name, err, out)
	}
	return time.Since(start)
}

// serveAgent serves dir through the real agent on 127.0.0.1, over TLS
// when cfg is set; it returns the address.
func serveAgent(b *testing.B, dir string, cfg *tls.Config) string {
	b.Helper()
	srv, err := agent.New(agent.Config{Dir: dir, Token: []byte(token)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	ts := httptest.NewUnstartedServer(srv)
	if cfg != nil {
		ts.TLS = cfg
		ts.StartTLS()
	} else {
		ts.Start()
	}
	b.Cleanup(ts.Close)
	return ts.Listener.Addr().String()
}

// firstCopy makes a copy in dir with one Sync through a new client.
func firstCopy(b *testing.B, dir string, cfg agentproto.ClientConfig) (*deltasync.Copy, deltasync.Result) {
	b.Helper()
	client, err := agentproto.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	c, err := deltasync.Open(dir, volName, deltasync.Options{BlockSize: blockSize})
	if err != nil {
		b.Fatal(err)
	}
	res, err := c.Sync(b.Context(), client)
	if err != nil {
		c.Close()
		b.Fatal(err)
	}
	if !res.FirstCopy {
		b.Fatal("the first Sync made no first copy")
	}
	return c, res
}

// startRsyncDaemon runs rsync as a daemon on 127.0.0.1 with one read-only
// module holding dir, until the benchmark ends; it returns the module's URL.
func startRsyncDaemon(b *testing.B, rsync, base, dir string) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(base, "rsyncd.conf")
	text := fmt.Sprintf("address = 127.0.0.1\nuse chroot = false\nuid = %d\ngid = %d\nlog file = %s\n[src]\n\tpath = %s\n\tread only = true\n",
		os.Getuid(), os.Getgid(), filepath.Join(base, "rsyncd.log"), dir)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(rsync, "--daemon", "--no-detach", "--port", strconv.Itoa(port), "--config", conf)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); ; {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("rsync daemon not listening on %s: %v\n%s", addr, err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "rsync://" + addr + "/src"
}

// statsField reads a number of rsync's --stats, "Name: 1,234 ...".
func statsField(b *testing.B, out []byte, name string) int64 {
	b.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: ([0-9,]+)`).FindSubmatch(out)
	if m == nil {
		b.Fatalf("rsync --stats printed no %q:\n%s", name, out)
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(string(m[1]), ",", ""), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return n
}
