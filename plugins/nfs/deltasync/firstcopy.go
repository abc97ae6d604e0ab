package deltasync

import (
	"context"
	"errors"
	"fmt"
	"os"

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
	size, next := c.st.Size, c.st.FirstCopyNext
	total := agentproto.Blocks(size, bs)

	var received, sinceCheckpoint int64
	_, err = src.Blocks(ctx, c.srcName, bs, next, total, nil, func(b agentproto.Block) error {
		if b.Index < next || b.Index >= total {
			return fmt.Errorf("source sent block %d, want %d..%d", b.Index, next, total-1)
		}
		rec, err := normalize(b, blockLen(b.Index, size, bs))
		if err != nil {
			return err
		}
		if rec.Kind == agentproto.KindData {
			if _, err := f.WriteAt(rec.Data, int64(b.Index)*int64(bs)); err != nil {
				return fmt.Errorf("write first copy: %w", err)
			}
		}
		// Blocks skipped by the source (the file shrank) stay holes, and
		// zero in the index: they agree.
		c.idx.Kinds[b.Index], c.idx.Sums[b.Index] = rec.Kind, rec.Sum
		received += int64(len(b.Data))
		next = b.Index + 1
		c.next.Store(next)
		if sinceCheckpoint += int64(bs); sinceCheckpoint >= c.checkpoint {
			sinceCheckpoint = 0
			return c.checkpointFirstCopy(f, next)
		}
		return nil
	})
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
