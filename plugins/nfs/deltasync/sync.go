package deltasync

import (
	"context"
	"fmt"
	"time"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
)

// Result counts one Sync.
type Result struct {
	// FirstCopy: this Sync made (or resumed and finished) the first copy,
	// then ran a delta sync to catch what changed during it.
	FirstCopy bool
	// BlocksCompared: blocks whose sums the delta sync compared.
	BlocksCompared uint64
	// BlocksChanged: blocks fetched and applied by the delta sync.
	BlocksChanged uint64
	// BytesReceived: block data received, first copy and delta (the
	// sums' bytes are counted by the Source).
	BytesReceived int64
	// Started is when the source read of the delta sync began: the time
	// the copy now stands for.
	Started  time.Time
	Duration time.Duration
	// FirstCopyDuration is the part of Duration the first copy took.
	FirstCopyDuration time.Duration
	Size              int64
}

// Sync brings the copy up to date with src: the first copy (or the rest
// of it) if there is none yet, then a delta sync. On return without error
// the copy, its index and its state are durable. On error the copy holds
// the last complete sync (or there is still none); Sync may be called
// again.
func (c *Copy) Sync(ctx context.Context, src agentproto.Source) (Result, error) {
	c.run.Lock()
	defer c.run.Unlock()
	if c.closed {
		return Result{}, ErrClosed
	}
	c.setSyncing(true)
	defer c.setSyncing(false)

	begin := time.Now()
	var res Result
	if !c.st.FirstCopyDone {
		res.FirstCopy = true
		n, err := c.firstCopy(ctx, src)
		res.BytesReceived += n
		res.FirstCopyDuration = time.Since(begin)
		if err != nil {
			res.Duration = time.Since(begin)
			return res, fmt.Errorf("first copy of %s: %w", c.name, err)
		}
	}
	d, err := c.delta(ctx, src)
	res.BlocksCompared, res.BlocksChanged, res.Started, res.Size = d.BlocksCompared, d.BlocksChanged, d.Started, d.Size
	res.BytesReceived += d.BytesReceived
	res.Duration = time.Since(begin)
	if err != nil {
		return res, fmt.Errorf("delta sync of %s: %w", c.name, err)
	}
	return res, nil
}

func (c *Copy) setSyncing(b bool) {
	c.mu.Lock()
	c.syncing = b
	c.mu.Unlock()
}

// blockLen is the length of block i of a file of size bytes.
func blockLen(i uint64, size int64, blockSize int) int {
	off := int64(i) * int64(blockSize)
	return int(max(0, min(int64(blockSize), size-off)))
}

// normalize fits a received block to the length want it has in the file
// the copy is being made for (the file may have changed size since). Its
// sum is the sum of its data (the Source's contract: the agent's client
// checks it), so what is written and what the index says agree.
func normalize(b agentproto.Block, want int) (journalRecord, error) {
	rec := journalRecord{Index: b.Index, Kind: b.Kind}
	switch b.Kind {
	case agentproto.KindZero:
		return rec, nil
	case agentproto.KindData:
	default:
		return rec, fmt.Errorf("block %d: unknown kind %d", b.Index, b.Kind)
	}
	if len(b.Data) == want {
		rec.Data, rec.Sum = b.Data, b.Sum
		return rec, nil
	}
	data := make([]byte, want) // cut, or padded with zeros
	copy(data, b.Data)
	if agentproto.IsZero(data) {
		return journalRecord{Index: b.Index, Kind: agentproto.KindZero}, nil
	}
	rec.Data, rec.Sum = data, agentproto.SumOf(data)
	return rec, nil
}
