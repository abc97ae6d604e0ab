package secretscan

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/core"
)

// InputPrefix holds the storage records and their metadata: the cluster
// manager's input, where keyrings belong (docs/contract.md). Every other
// key is written by mirrord, mirrorctl or the DR manager.
const InputPrefix = core.ClustersPrefix

// ScanEtcd scans every value written to etcd outside InputPrefix: the
// keys there now and every revision of etcd's history not compacted, so
// that a status written with a secret and overwritten since is found.
func (s *Scanner) ScanEtcd(ctx context.Context, cli *clientv3.Client) error {
	now, err := cli.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		return fmt.Errorf("read etcd: %w", err)
	}
	for _, kv := range now.Kvs {
		if k := string(kv.Key); !strings.HasPrefix(k, InputPrefix) {
			s.Scan("etcd key "+k, kv.Value)
		}
	}
	end := now.Header.Revision
	// Revision 1 is the empty store: each later one is a write, seen as
	// one or more watch events.
	for from := int64(2); from <= end; {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		w := cli.Watch(wctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(from))
		from, err = s.scanWatch(wctx, cli, w, end)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// scanWatch scans the events of w up to revision end; it returns where to
// watch from next: past end when done, the compaction's revision when
// older revisions are gone.
func (s *Scanner) scanWatch(ctx context.Context, cli *clientv3.Client, w clientv3.WatchChan, end int64) (int64, error) {
	// A progress report at end or later also says all is read, should
	// the last revision hold no event this watch shows.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("read etcd's history: %w", ctx.Err())
		case <-tick.C:
			_ = cli.RequestProgress(ctx)
		case resp, ok := <-w:
			if !ok {
				return 0, fmt.Errorf("read etcd's history: the watch ended: %w", ctx.Err())
			}
			if resp.CompactRevision != 0 {
				return resp.CompactRevision, nil
			}
			if err := resp.Err(); err != nil {
				return 0, fmt.Errorf("read etcd's history: %w", err)
			}
			if resp.IsProgressNotify() && resp.Header.Revision >= end {
				return end + 1, nil
			}
			for _, ev := range resp.Events {
				if k := string(ev.Kv.Key); !strings.HasPrefix(k, InputPrefix) {
					s.Scan(fmt.Sprintf("etcd key %s (revision %d)", k, ev.Kv.ModRevision), ev.Kv.Value)
				}
				if ev.Kv.ModRevision >= end {
					return end + 1, nil
				}
			}
		}
	}
}
