package deltasync

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
	"github.com/cdmdr/mirror/plugins/nfs/deltasync/deltatest"
)

const benchSize = 1 << 30

// benchSource writes a 1 GiB source file of random data.
func benchSource(b *testing.B) *env {
	b.Helper()
	e := &env{src: b.TempDir(), dst: b.TempDir()}
	e.source = deltatest.New(e.src)
	for off := int64(0); off < benchSize; off += 64 << 20 {
		writeRandom(b, e.srcPath(), off, 64<<20, uint64(off>>20))
	}
	return e
}

// BenchmarkDeltaSync1GiB: a delta sync of a 1 GiB file with 1 % of its
// 64 KiB blocks changed at random.
func BenchmarkDeltaSync1GiB(b *testing.B) {
	e := benchSource(b)
	c, err := Open(e.dst, testName, Options{BlockSize: bs})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Sync(b.Context(), e.source); err != nil {
		b.Fatal(err)
	}
	const blocks = benchSize / bs
	rnd := rand.New(rand.NewPCG(1, 2))
	var received, sums, changed int64
	timed := &timedSums{Source: e.source}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for range blocks / 100 {
			writeRandom(b, e.srcPath(), rnd.Int64N(blocks)*bs, bs, rnd.Uint64())
		}
		e.source.Reset()
		b.StartTimer()
		res, err := c.Sync(b.Context(), timed)
		if err != nil {
			b.Fatal(err)
		}
		got := e.source.Counts()
		received += res.BytesReceived
		sums += got.SumsBytes
		changed += int64(res.BlocksChanged)
	}
	b.ReportMetric(float64(received)/float64(b.N), "data-bytes/op")
	b.ReportMetric(float64(sums)/float64(b.N), "sums-bytes/op")
	b.ReportMetric(float64(changed)/float64(b.N), "blocks-changed/op")
	b.ReportMetric(timed.d.Seconds()*1e3/float64(b.N), "source-sums-ms/op")
}

// timedSums times the source's Sums: the part of a delta sync spent
// reading the source rather than in the plugin.
type timedSums struct {
	*deltatest.Source
	d time.Duration
}

func (s *timedSums) Sums(ctx context.Context, name string, bs int) (agentproto.Sums, error) {
	t := time.Now()
	defer func() { s.d += time.Since(t) }()
	return s.Source.Sums(ctx, name, bs)
}

// BenchmarkFirstCopy1GiB: a first copy of a 1 GiB file of random data
// (MB/s of the first copy alone; the Sync's catch-up delta is reported
// apart).
func BenchmarkFirstCopy1GiB(b *testing.B) {
	benchFirstCopy(b, benchSource(b), Options{BlockSize: bs})
}

func benchFirstCopy(b *testing.B, e *env, opts Options) {
	var first, total float64
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dst := filepath.Join(e.dst, "run")
		os.RemoveAll(dst)
		if err := os.Mkdir(dst, 0o700); err != nil {
			b.Fatal(err)
		}
		c, err := Open(dst, testName, opts)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := c.Sync(b.Context(), e.source)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		c.Close()
		first += res.FirstCopyDuration.Seconds()
		total += res.Duration.Seconds()
		b.StartTimer()
	}
	b.ReportMetric(benchSize/1e6*float64(b.N)/first, "first-copy-MB/s")
	b.ReportMetric((total-first)/float64(b.N)*1e3, "catch-up-ms/op")
}
