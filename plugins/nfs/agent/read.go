package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
)

// batchBytes is about how much one worker reads per job: large enough to
// keep channel traffic negligible, small enough to bound memory.
const batchBytes = 1 << 20

// block is one block as read now.
type block struct {
	index uint64
	kind  agentproto.Kind
	sum   agentproto.Sum
	data  []byte // KindData in a blocks scan only
}

// batch is a worker's job: consecutive entries of the requested indexes,
// read and summed together.
type batch struct {
	idx    []uint64
	blocks []block
	buf    []byte // holds the blocks' data when it is kept
	err    error
	done   chan struct{}
}

// picker hands out the indexes to read, in order: a list or a range,
// either cut at the file's last block.
type picker struct {
	list     []uint64
	next, to uint64
	ranged   bool
}

func (p *picker) take(n int) []uint64 {
	if p.ranged {
		k := min(uint64(n), p.to-p.next)
		idx := make([]uint64, k)
		for i := range idx {
			idx[i] = p.next + uint64(i)
		}
		p.next += k
		return idx
	}
	k := min(n, len(p.list))
	idx := p.list[:k]
	p.list = p.list[k:]
	return idx
}

// scan reads blocks of one file in parallel and emits them in order.
type scan struct {
	f       *os.File
	size    int64 // as when the request began: blocks past it are not read
	bs      int
	keep    bool // keep the data to send it, or only sum it
	workers int
	read    *atomic.Int64 // bytes read from the file
	pool    sync.Pool
}

// run reads the picked blocks with s.workers workers, at most a few
// batches ahead of emit, which sees the batches in order. It returns when
// all its goroutines have ended: at the end, at emit's or a read's error,
// or when ctx ends (the client went away).
func (s *scan) run(ctx context.Context, p *picker, emit func(*batch) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	per := max(1, batchBytes/s.bs)
	window := 4 * s.workers // sums hold no data: read well ahead
	if s.keep {
		window = min(2*s.workers, 8)
	}
	jobs := make(chan *batch)
	order := make(chan *batch, window)
	var wg sync.WaitGroup
	for range s.workers {
		wg.Go(func() {
			buf := make([]byte, s.bs) // a sums scan reads every block here
			ext := extent{}
			for b := range jobs {
				s.readBatch(ctx, b, buf, &ext)
				close(b.done)
			}
		})
	}
	wg.Go(func() {
		defer close(jobs)
		defer close(order)
		for {
			idx := p.take(per)
			if len(idx) == 0 {
				return
			}
			b := &batch{idx: idx, done: make(chan struct{})}
			select {
			case order <- b:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- b:
			case <-ctx.Done():
				return
			}
		}
	})
	var err error
	for b := range order {
		done := false
		select {
		case <-b.done:
			err, done = b.err, true
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err == nil {
			err = emit(b)
		}
		// A batch left behind by ctx's end may still be read into by
		// its worker: only a finished batch's buffer is free again.
		if done && b.buf != nil {
			s.pool.Put(&b.buf)
		}
		if err != nil {
			break
		}
	}
	cancel()
	wg.Wait()
	return err
}

// readBatch reads and sums b's blocks; a blocks scan keeps their data.
func (s *scan) readBatch(ctx context.Context, b *batch, scratch []byte, ext *extent) {
	if s.keep {
		if p, ok := s.pool.Get().(*[]byte); ok && len(*p) >= len(b.idx)*s.bs {
			b.buf = *p
		} else {
			b.buf = make([]byte, max(batchBytes, len(b.idx)*s.bs))
		}
	}
	b.blocks = make([]block, len(b.idx))
	for i, index := range b.idx {
		if err := ctx.Err(); err != nil {
			b.err = err
			return
		}
		buf := scratch
		if s.keep {
			buf = b.buf[i*s.bs : (i+1)*s.bs]
		}
		blk, err := s.readBlock(index, buf, ext)
		if err != nil {
			b.err = err
			return
		}
		b.blocks[i] = blk
	}
}

// readBlock reads block index into buf: a hole is not read, and a block
// of zeros is KindZero too.
func (s *scan) readBlock(index uint64, buf []byte, ext *extent) (block, error) {
	blk := block{index: index}
	off := int64(index) * int64(s.bs)
	n := min(int64(s.bs), s.size-off)
	if ext.hole(s.f, off, n) {
		return blk, nil
	}
	got, err := s.f.ReadAt(buf[:n], off)
	s.read.Add(int64(got))
	if err != nil && !errors.Is(err, io.EOF) { // EOF: shrunk since; send what is there
		return blk, fmt.Errorf("read block %d: %w", index, err)
	}
	data := buf[:got]
	if got == 0 || agentproto.IsZero(data) {
		return blk, nil
	}
	blk.kind = agentproto.KindData
	blk.sum = agentproto.SumOf(data)
	if s.keep {
		blk.data = data
	}
	return blk, nil
}

// extent remembers where the last lseek found data: [start, end), after
// a hole from holeFrom, so that a sequential scan seeks once per extent.
type extent struct {
	holeFrom, start, end int64
	known                bool
}

// hole says whether [off, off+n) lies in a hole, asking the filesystem
// with SEEK_DATA/SEEK_HOLE when off is outside what is known.
func (e *extent) hole(f *os.File, off, n int64) bool {
	if !canSeekHoles {
		return false
	}
	if e.known && off >= e.start && off < e.end {
		return false
	}
	if !e.known || off < e.holeFrom || off >= e.end {
		e.known = true
		e.holeFrom = off
		ds, err := f.Seek(off, seekData)
		switch {
		case errors.Is(err, syscall.ENXIO): // no data from off to the end
			e.start, e.end = math.MaxInt64, math.MaxInt64
		case err != nil: // the filesystem cannot tell: read everything
			e.holeFrom, e.start, e.end = 0, 0, math.MaxInt64
		default:
			de, err := f.Seek(ds, seekHole)
			if err != nil {
				de = math.MaxInt64
			}
			e.start, e.end = ds, de
		}
	}
	return off >= e.holeFrom && off+n <= e.start
}
