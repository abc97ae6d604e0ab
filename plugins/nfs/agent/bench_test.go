package agent_test

import (
	"context"
	"crypto/sha256"
	"os"
	"testing"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
)

const benchSize = 256 << 20

// benchFile writes a 256 MiB file of data (no zero blocks) for e.
func benchFile(b *testing.B, e *env) {
	b.Helper()
	f, err := os.Create(e.dir + "/volume-bench")
	if err != nil {
		b.Fatal(err)
	}
	chunk := pattern(1<<20, 42)
	for i := range benchSize >> 20 {
		chunk[0] = byte(i) | 1 // no two chunks alike
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSums: the agent sums a 256 MiB file (in the page cache) and
// sends the sums over loopback HTTP.
func BenchmarkSums(b *testing.B) {
	e := newEnv(b)
	benchFile(b, e)
	c := e.client(b, agentproto.ClientConfig{})
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := c.Sums(context.Background(), "volume-bench", agentproto.DefaultBlockSize); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBlocks: every block of a 256 MiB file streamed over loopback,
// each checked against its sum by the client.
func BenchmarkBlocks(b *testing.B) {
	e := newEnv(b)
	benchFile(b, e)
	c := e.client(b, agentproto.ClientConfig{})
	n := agentproto.Blocks(benchSize, agentproto.DefaultBlockSize)
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := c.Blocks(context.Background(), "volume-bench", agentproto.DefaultBlockSize, 0, n, nil, func(agentproto.Block) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSumOneCore is the baseline: one core summing 64 KiB blocks.
func BenchmarkSumOneCore(b *testing.B) {
	buf := pattern(agentproto.DefaultBlockSize, 1)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		agentproto.SumOf(buf)
	}
}

// BenchmarkSHA256OneCore is protocol 1's block sum, for comparison.
func BenchmarkSHA256OneCore(b *testing.B) {
	buf := pattern(agentproto.DefaultBlockSize, 1)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		sha256.Sum256(buf)
	}
}
