package deltasync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
)

// delta runs one delta sync: compare the source's sums with the index,
// fetch the changed blocks into the journal, commit it, apply it.
func (c *Copy) delta(ctx context.Context, src agentproto.Source) (Result, error) {
	bs := c.st.BlockSize
	res := Result{Started: time.Now()}
	sums, err := src.Sums(ctx, c.srcName, bs)
	if err != nil {
		return res, fmt.Errorf("sums: %w", err)
	}
	n := agentproto.Blocks(sums.Size, bs)
	if sums.BlockSize != bs || uint64(len(sums.Kinds)) != n || uint64(len(sums.Sums)) != n {
		return res, fmt.Errorf("sums: the source sent %d sums of %d-byte blocks for %d bytes, want %d of %d",
			len(sums.Kinds), sums.BlockSize, sums.Size, n, bs)
	}
	res.BlocksCompared, res.Size = n, sums.Size
	changed := changedBlocks(c.idx, sums)
	if len(changed) == 0 && sums.Size == c.idx.Size {
		err := c.saveState(func(s *state) { s.LastSync, s.LastSyncBytes = res.Started, 0 })
		return res, err
	}

	j, err := createJournal(c.path("journal"), journalHeader{BlockSize: bs, Size: sums.Size, Started: res.Started})
	if err != nil {
		return res, err
	}
	if len(changed) > 0 {
		want := 0 // changed[want] is the next block expected
		_, err = src.Blocks(ctx, c.srcName, bs, 0, 0, changed, func(b agentproto.Block) error {
			for want < len(changed) && changed[want] < b.Index {
				want++ // not sent (the file shrank): the copy keeps it, and so does the index
			}
			if want == len(changed) || changed[want] != b.Index {
				return fmt.Errorf("source sent block %d, not asked for or out of order", b.Index)
			}
			want++
			rec, err := normalize(b, blockLen(b.Index, sums.Size, bs))
			if err != nil {
				return err
			}
			res.BytesReceived += int64(len(b.Data))
			return j.add(rec)
		})
		if err != nil {
			j.abort()
			return res, fmt.Errorf("blocks: %w", err)
		}
	}
	res.BlocksChanged = j.records
	if err := j.commit(res.BytesReceived); err != nil {
		j.abort()
		return res, err
	}
	if c.hooks.afterCommit != nil {
		if err := c.hooks.afterCommit(); err != nil {
			return res, err
		}
	}
	return res, c.applyJournal()
}

// changedBlocks lists, in order, the blocks of the file sums describes
// that differ from the index. Blocks past the index's end differ unless
// they are zero: growing the copy makes them zero.
func changedBlocks(idx, sums agentproto.Sums) []uint64 {
	var changed []uint64
	for i, k := range sums.Kinds {
		if i < len(idx.Kinds) {
			if k != idx.Kinds[i] || (k == agentproto.KindData && sums.Sums[i] != idx.Sums[i]) {
				changed = append(changed, uint64(i))
			}
		} else if k != agentproto.KindZero {
			changed = append(changed, uint64(i))
		}
	}
	return changed
}

// applyJournal applies the committed journal to the copy: write data
// blocks, punch zero ones, set the size; fsync; then the index and the
// state; then the journal goes. Applying twice gives the same copy, so a
// crash anywhere in here is finished by applying again. It returns an
// error wrapping errTorn for a journal that is not committed.
func (c *Copy) applyJournal() error {
	f, err := os.OpenFile(c.target(), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("apply the journal: %w", err)
	}
	defer f.Close()
	idx := c.idx
	// Work on a copy of the index: the one in memory must keep matching
	// the one on disk if the apply stops.
	idx.Kinds = append([]agentproto.Kind(nil), idx.Kinds...)
	idx.Sums = append([]agentproto.Sum(nil), idx.Sums...)
	var applied uint64
	hd, cm, err := readJournal(c.path("journal"), func(r journalRecord) error {
		if c.hooks.beforeApplyRecord != nil {
			if err := c.hooks.beforeApplyRecord(applied); err != nil {
				return err
			}
		}
		applied++
		bs := int64(idx.BlockSize)
		off := int64(r.Index) * bs
		if r.Kind == agentproto.KindData {
			if _, err := f.WriteAt(r.Data, off); err != nil {
				return fmt.Errorf("apply block %d: %w", r.Index, err)
			}
		} else if err := punchHole(f, off, bs); err != nil {
			return err
		}
		if r.Index >= uint64(len(idx.Kinds)) {
			resizeIndex(&idx, int64(r.Index+1)*bs) // exact size set below
		}
		idx.Kinds[r.Index], idx.Sums[r.Index] = r.Kind, r.Sum
		return nil
	})
	if err != nil {
		return fmt.Errorf("apply the journal: %w", err)
	}
	if hd.BlockSize != idx.BlockSize {
		return fmt.Errorf("apply the journal: %w: blocks of %d bytes, the copy's are %d", errTorn, hd.BlockSize, idx.BlockSize)
	}
	if err := f.Truncate(hd.Size); err != nil {
		return fmt.Errorf("apply the journal: size: %w", err)
	}
	resizeIndex(&idx, hd.Size)
	if err := f.Sync(); err != nil {
		return fmt.Errorf("apply the journal: fsync %s: %w", f.Name(), err)
	}
	if err := writeFileAtomic(c.path("sums"), encodeIndex(idx)); err != nil {
		return err
	}
	c.idx = idx
	if err := c.saveState(func(s *state) {
		s.Size, s.LastSync, s.LastSyncBytes = hd.Size, hd.Started, cm.Bytes
	}); err != nil {
		return err
	}
	if err := removeDurable(c.path("journal")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
