// Package deltatest is a Source reading the files of a local directory
// directly, for tests and benchmarks of deltasync: it counts what it sends
// and can be told to fail after some blocks, like a cut connection.
package deltatest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
)

// ErrCut is what Blocks returns when told to fail.
var ErrCut = errors.New("deltatest: connection cut")

// SumBytes is what one block's entry in Sums counts for: a kind and a sum.
const SumBytes = int64(1 + len(agentproto.Sum{}))

// Source serves the regular files directly in Dir.
type Source struct {
	Dir string

	mu        sync.Mutex
	failAfter int64          // blocks Blocks may still send; -1: no limit
	onBlock   func(i uint64) // before block i is read

	sumsCalls, sumsBytes, blocks, dataBytes atomic.Int64
}

// New serves the files in dir.
func New(dir string) *Source { return &Source{Dir: dir, failAfter: -1} }

// Counts is what a Source sent.
type Counts struct {
	SumsCalls int64
	SumsBytes int64 // SumBytes per block of each Sums
	Blocks    int64 // blocks sent, data or zero
	DataBytes int64 // data bytes of the blocks sent
}

// Counts returns what was sent since New or the last Reset.
func (s *Source) Counts() Counts {
	return Counts{s.sumsCalls.Load(), s.sumsBytes.Load(), s.blocks.Load(), s.dataBytes.Load()}
}

// Reset zeroes the counts.
func (s *Source) Reset() {
	s.sumsCalls.Store(0)
	s.sumsBytes.Store(0)
	s.blocks.Store(0)
	s.dataBytes.Store(0)
}

// FailAfter makes Blocks send n more blocks (over any number of calls),
// then fail with ErrCut; n < 0 removes the limit.
func (s *Source) FailAfter(n int64) {
	s.mu.Lock()
	s.failAfter = n
	s.mu.Unlock()
}

// OnBlock sets a function called before each block is read by Blocks
// (to change the file during a transfer); nil removes it.
func (s *Source) OnBlock(f func(i uint64)) {
	s.mu.Lock()
	s.onBlock = f
	s.mu.Unlock()
}

func (s *Source) open(name string) (*os.File, int64, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") {
		return nil, 0, fmt.Errorf("name %q: %w", name, agentproto.ErrRefused)
	}
	f, err := os.Open(filepath.Join(s.Dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, fmt.Errorf("%s: %w", name, agentproto.ErrNotFound)
	}
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// reader reads the blocks of one file, skipping holes without reading
// them, as the agent does.
type reader struct {
	f    *os.File
	size int64
	bs   int
	buf  []byte
	// [data, hole) is the first data region at or after offset from.
	from, data, hole int64
}

func newReader(f *os.File, size int64, bs int) *reader {
	return &reader{f: f, size: size, bs: bs, buf: make([]byte, bs), from: -1, hole: -1}
}

// block reads block i: its kind, sum and data (valid until the next call).
func (r *reader) block(i uint64) (agentproto.Block, error) {
	off := int64(i) * int64(r.bs)
	n := int(max(0, min(int64(r.bs), r.size-off)))
	if n == 0 {
		return agentproto.Block{Index: i}, nil
	}
	if off < r.from || off >= r.hole {
		data, err := unix.Seek(int(r.f.Fd()), off, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO):
			data = r.size
		case err != nil:
			return agentproto.Block{}, err
		}
		hole := r.size
		if data < r.size {
			if hole, err = unix.Seek(int(r.f.Fd()), data, unix.SEEK_HOLE); err != nil {
				return agentproto.Block{}, err
			}
		}
		r.from, r.data, r.hole = off, data, hole
	}
	if off+int64(n) <= r.data {
		return agentproto.Block{Index: i}, nil // all hole
	}
	k, err := r.f.ReadAt(r.buf[:n], off)
	if err != nil && !errors.Is(err, io.EOF) {
		return agentproto.Block{}, err
	}
	data := r.buf[:k]
	if bytes.Equal(data, zero[:k]) {
		return agentproto.Block{Index: i}, nil
	}
	return agentproto.Block{Index: i, Kind: agentproto.KindData, Sum: agentproto.SumOf(data), Data: data}, nil
}

var zero = make([]byte, agentproto.MaxBlockSize)

// Sums implements agentproto.Source.
func (s *Source) Sums(ctx context.Context, name string, bs int) (agentproto.Sums, error) {
	if err := agentproto.CheckBlockSize(bs); err != nil {
		return agentproto.Sums{}, err
	}
	f, size, err := s.open(name)
	if err != nil {
		return agentproto.Sums{}, err
	}
	defer f.Close()
	n := agentproto.Blocks(size, bs)
	sums := agentproto.Sums{Size: size, BlockSize: bs, Kinds: make([]agentproto.Kind, n), Sums: make([]agentproto.Sum, n)}
	r := newReader(f, size, bs)
	for i := range n {
		if err := ctx.Err(); err != nil {
			return agentproto.Sums{}, err
		}
		b, err := r.block(i)
		if err != nil {
			return agentproto.Sums{}, err
		}
		sums.Kinds[i], sums.Sums[i] = b.Kind, b.Sum
	}
	s.sumsCalls.Add(1)
	s.sumsBytes.Add(int64(n) * SumBytes)
	return sums, nil
}

// Blocks implements agentproto.Source.
func (s *Source) Blocks(ctx context.Context, name string, bs int, from, to uint64, idx []uint64, fn func(agentproto.Block) error) (int64, error) {
	if err := agentproto.CheckBlockSize(bs); err != nil {
		return 0, err
	}
	f, size, err := s.open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := agentproto.Blocks(size, bs)
	if idx == nil {
		for i := from; i < min(to, n); i++ {
			idx = append(idx, i)
		}
	}
	r := newReader(f, size, bs)
	for _, i := range idx {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if i >= n {
			break // past the end now
		}
		s.mu.Lock()
		cut := s.failAfter == 0
		if s.failAfter > 0 {
			s.failAfter--
		}
		onBlock := s.onBlock
		s.mu.Unlock()
		if cut {
			return 0, ErrCut
		}
		if onBlock != nil {
			onBlock(i)
		}
		b, err := r.block(i)
		if err != nil {
			return 0, err
		}
		s.blocks.Add(1)
		s.dataBytes.Add(int64(len(b.Data)))
		if err := fn(b); err != nil {
			return 0, err
		}
	}
	return size, nil
}
