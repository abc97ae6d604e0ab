package deltasync

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
)

// firstCopy builds first-copy from src, from the persisted next block on,
// and publishes it as the copy. It returns the data bytes received.
func (c *Copy) firstCopy(ctx context.Context, src agentproto.Source) (int64, error) {
	bs := c.st.BlockSize
	f, err := c.openFirstCopy(ctx, src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	size, from := c.st.Size, c.st.FirstCopyNext
	total := agentproto.Blocks(size, bs)

	// Blocks are checked and written by a writer goroutine while the
	// source reads the next ones: checking a block's sum costs about as
	// much as the source computing it.
	w := newBlockWriter(c, f, size, from)
	var received int64
	expect := from
	_, err = src.Blocks(ctx, c.srcName, bs, from, total, nil, func(b agentproto.Block) error {
		if b.Index < expect || b.Index >= total {
			return fmt.Errorf("source sent block %d, want %d..%d", b.Index, expect, total-1)
		}
		expect = b.Index + 1
		received += int64(len(b.Data))
		return w.put(b)
	})
	next, werr := w.close()
	if err == nil {
		err = werr
	}
	if err != nil {
		// Keep what arrived, so the next attempt resumes after it.
		if cerr := c.checkpointFirstCopy(f, next); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return received, err
	}
	if err := c.checkpointFirstCopy(f, total); err != nil {
		return received, err
	}
	if err := f.Close(); err != nil {
		return received, fmt.Errorf("close first copy: %w", err)
	}
	return received, c.publishFirstCopy()
}

// blockWriter checks first copy blocks and writes them, in order, in a
// goroutine of its own, checkpointing as it goes.
type blockWriter struct {
	c    *Copy
	f    *os.File
	size int64

	free   chan []byte           // buffers for block data
	work   chan agentproto.Block // blocks to write, Data in a free buffer
	failed chan struct{}         // closed when err is set
	done   chan struct{}         // closed when the goroutine ends
	err    error
	next   uint64 // blocks before it are written

	fd          int   // f's descriptor, for the writeback hint
	writtenBack int64 // bytes before it have been handed to writeback
}

// writebackBytes: the writer starts the writeback of each such span as
// soon as it is written, so that a checkpoint's fdatasync finds little
// left to write instead of stopping the copy while the disk catches up.
const writebackBytes = 8 << 20

const writerDepth = 16 // blocks in flight

func newBlockWriter(c *Copy, f *os.File, size int64, next uint64) *blockWriter {
	w := &blockWriter{
		c: c, f: f, size: size, next: next,
		fd: int(f.Fd()), writtenBack: int64(next) * int64(c.st.BlockSize),
		free:   make(chan []byte, writerDepth),
		work:   make(chan agentproto.Block, writerDepth),
		failed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	for range writerDepth {
		w.free <- make([]byte, c.st.BlockSize)
	}
	go w.run()
	return w
}

// put hands b (Data copied) to the writer; it fails once the writer has.
func (w *blockWriter) put(b agentproto.Block) error {
	if b.Data != nil {
		select {
		case buf := <-w.free:
			b.Data = append(buf[:0], b.Data...)
		case <-w.failed:
			return w.err
		}
	}
	select {
	case w.work <- b:
		return nil
	case <-w.failed:
		return w.err
	}
}

// close waits for the blocks handed over to be written and returns the
// next block to copy and the writer's error.
func (w *blockWriter) close() (uint64, error) {
	close(w.work)
	<-w.done
	return w.next, w.err
}

func (w *blockWriter) run() {
	defer close(w.done)
	bs := w.c.st.BlockSize
	var sinceCheckpoint int64
	for b := range w.work {
		if w.err == nil {
			if err := w.write(b); err != nil {
				w.err = err
				close(w.failed)
			} else if sinceCheckpoint += int64(bs); sinceCheckpoint >= w.c.checkpoint {
				sinceCheckpoint = 0
				if err := w.c.checkpointFirstCopy(w.f, w.next); err != nil {
					w.err = err
					close(w.failed)
				}
			}
		}
		if b.Data != nil {
			w.free <- b.Data
		}
	}
}

func (w *blockWriter) write(b agentproto.Block) error {
	bs := w.c.st.BlockSize
	rec, err := normalize(b, blockLen(b.Index, w.size, bs))
	if err != nil {
		return err
	}
	if rec.Kind == agentproto.KindData {
		if _, err := w.f.WriteAt(rec.Data, int64(b.Index)*int64(bs)); err != nil {
			return fmt.Errorf("write first copy: %w", err)
		}
		if end := int64(b.Index+1) * int64(bs); end-w.writtenBack >= writebackBytes {
			// Only a hint: durability is the checkpoint's fdatasync, so
			// a failure here (a file system without it) changes nothing.
			_ = unix.SyncFileRange(w.fd, w.writtenBack, end-w.writtenBack, unix.SYNC_FILE_RANGE_WRITE)
			w.writtenBack = end
		}
	}
	// Blocks skipped by the source (the file shrank) stay holes, and zero
	// in the index: they agree.
	w.c.idx.Kinds[b.Index], w.c.idx.Sums[b.Index] = rec.Kind, rec.Sum
	w.next = b.Index + 1
	w.c.next.Store(w.next)
	return nil
}

// openFirstCopy opens first-copy to resume it, or creates it for the
// file's current size.
func (c *Copy) openFirstCopy(ctx context.Context, src agentproto.Source) (*os.File, error) {
	path := c.path("first-copy")
	if c.st.FirstCopyStarted {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err == nil {
			// Blocks after the checkpoint may have been written before a
			// crash; the source may have zeroed them since.
			bs := int64(c.st.BlockSize)
			next := int64(c.st.FirstCopyNext) * bs
			if err := punchHole(f, next, c.st.Size-next); err != nil {
				f.Close()
				return nil, err
			}
			for i := c.st.FirstCopyNext; i < uint64(len(c.idx.Kinds)); i++ {
				c.idx.Kinds[i], c.idx.Sums[i] = 0, agentproto.Sum{} // as punched
			}
			return f, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open first copy: %w", err)
		}
	}
	// An empty range: no blocks, only the file's size.
	size, err := src.Blocks(ctx, c.srcName, c.st.BlockSize, 0, 0, nil, func(agentproto.Block) error { return nil })
	if err != nil {
		return nil, fmt.Errorf("size of the source: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create first copy: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("size first copy: %w", err)
	}
	c.idx = newIndex(size, c.st.BlockSize)
	c.next.Store(0)
	if err := c.checkpointFirstCopy(f, 0); err != nil {
		f.Close()
		return nil, err
	}
	if err := c.saveState(func(s *state) { s.Size, s.FirstCopyStarted, s.FirstCopyNext = size, true, 0 }); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkpointFirstCopy makes blocks before next durable and records that
// they are: data first, then the index, then the state pointing past them.
func (c *Copy) checkpointFirstCopy(f *os.File, next uint64) error {
	if err := fdatasync(f); err != nil {
		return err
	}
	if err := syncDir(c.stateDir); err != nil {
		return err
	}
	if err := writeFileAtomic(c.path("sums"), encodeIndex(c.idx)); err != nil {
		return err
	}
	if !c.st.FirstCopyStarted {
		return nil // the caller saves the state that makes it started
	}
	return c.saveState(func(s *state) { s.FirstCopyNext = next })
}

// publishFirstCopy renames the complete first-copy to the copy's name and
// marks the first copy done. Before it, the state says every block is in
// first-copy; a crash between the rename and the state is finished by
// recoverFirstCopy.
func (c *Copy) publishFirstCopy() error {
	if err := os.Rename(c.path("first-copy"), c.target()); err != nil {
		return fmt.Errorf("publish first copy: %w", err)
	}
	if err := syncDir(c.dir); err != nil {
		return err
	}
	if err := syncDir(c.stateDir); err != nil {
		return err
	}
	return c.saveState(func(s *state) { s.FirstCopyDone = true })
}
