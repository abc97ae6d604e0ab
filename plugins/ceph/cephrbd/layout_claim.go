package cephrbd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"syscall"

	"github.com/ceph/go-ceph/rados"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// A source pool feeds, through rbd-mirror, every target pool that
// registers it as its peer, with every mirror-enabled image it holds:
// rbd-mirror cannot choose targets per image (docs/ceph.md, "Layouts: 1:N
// and N:1"). So a source pool may serve one target cluster only. The
// environment that prepared it first records that in the source pool, in
// one rados object created exclusively: of two daemons preparing two
// environments at the same moment, exactly one creates it. Its teardown
// removes it; nothing else does.

// feedObject is the rados object, in the source pool, naming the target
// the pool feeds.
const feedObject = "mirror.feed"

// feed is what feedObject holds (JSON, no secrets).
type feed struct {
	Environment string `json:"environment"`
	// Target is the target storage's key, TargetSite the target cluster's
	// mirror site name (as the tx peers rbd-mirror registers on the source
	// pool name it), TargetFSID its fsid, TargetPool the pool there.
	Target     string `json:"target"`
	TargetSite string `json:"target_site"`
	TargetFSID string `json:"target_fsid"`
	TargetPool string `json:"target_pool"`
}

// sameCluster says whether f and g feed one target cluster.
func (f feed) sameCluster(g feed) bool {
	if f.TargetFSID != "" && g.TargetFSID != "" {
		return f.TargetFSID == g.TargetFSID
	}
	return f.TargetSite == g.TargetSite
}

// readFeed reads the source pool's record; ok is false without one.
func readFeed(ctx context.Context, io *rados.IOContext) (f feed, ok bool, err error) {
	data, err := call(ctx, func() ([]byte, error) {
		st, err := io.Stat(feedObject)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, st.Size)
		n, err := io.Read(feedObject, buf, 0)
		return buf[:n], err
	})
	if errors.Is(err, rados.ErrNotFound) {
		return feed{}, false, nil
	}
	if err != nil {
		return feed{}, false, fmt.Errorf("read object %s: %w", feedObject, err)
	}
	if err := json.Unmarshal(data, &f); err != nil || f.Environment == "" {
		// Unreadable, or written and not yet filled (one atomic op writes
		// both, so this is not a race): held by an unknown environment.
		return feed{Environment: "(unreadable record)"}, true, nil
	}
	return f, true, nil
}

// claimFeed creates the record for f unless one exists; it returns the
// record that holds the pool: f when created, the existing one otherwise.
func claimFeed(ctx context.Context, io *rados.IOContext, f feed) (feed, error) {
	data, _ := json.Marshal(f)
	err := do(ctx, func() error {
		op := rados.CreateWriteOp()
		defer op.Release()
		op.Create(rados.CreateExclusive)
		op.WriteFull(data)
		return operate(op, io, feedObject)
	})
	if err == nil {
		return f, nil
	}
	if !errors.Is(err, rados.ErrObjectExists) && !isErrno(err, syscall.EEXIST) {
		return feed{}, fmt.Errorf("create object %s: %w", feedObject, err)
	}
	held, ok, err := readFeed(ctx, io)
	if err != nil {
		return feed{}, err
	}
	if !ok { // released between the two: try once more
		return claimFeed(ctx, io, f)
	}
	return held, nil
}

// releaseFeed removes the record when envID holds it.
func releaseFeed(ctx context.Context, io *rados.IOContext, envID string) error {
	f, ok, err := readFeed(ctx, io)
	if err != nil || !ok || f.Environment != envID {
		return err
	}
	// Only the holder removes the record, and nobody replaces it: what
	// was read is still there.
	err = do(ctx, func() error { return io.Delete(feedObject) })
	if err != nil && !errors.Is(err, rados.ErrNotFound) {
		return fmt.Errorf("remove object %s: %w", feedObject, err)
	}
	return nil
}

// feedRecord lists the source pool's record when the query holds no
// environment of that name: it would refuse every other target cluster.
func (p poolScan) feedRecord(ctx context.Context) ([]sdk.Leftover, error) {
	f, ok, err := readFeed(ctx, p.io)
	if err != nil || !ok || p.h.envs[f.Environment] {
		return nil, err
	}
	return []sdk.Leftover{{
		Kind: "record",
		Name: fmt.Sprintf("object %s %s", feedObject, p.where),
		Description: fmt.Sprintf("records that pool %s feeds target pool %s of storage %s for environment %s, and the daemon holds no such "+
			"environment: while it is there, no environment from this pool into another target cluster can be prepared",
			p.sd.m.Pool, f.TargetPool, f.Target, f.Environment),
		Remedy: remedy(fmt.Sprintf("no mirrord knows environment %s any more (it was torn down without this storage).", f.Environment),
			fmt.Sprintf("rados -p %s rm %s", p.sd.m.Pool, feedObject)),
	}}, nil
}
