package main

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// firstChange watches keys (prefixes when prefix is set) from rev+1 and
// returns once one of them changed, or ctx ends; the watches end with it.
func (s *store) firstChange(ctx context.Context, rev int64, prefix bool, keys ...string) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithRev(rev + 1)}
	if prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	changed := make(chan error, len(keys))
	for _, k := range keys {
		ch := s.cli.Watch(wctx, k, opts...)
		go func() {
			for resp := range ch {
				if err := resp.Err(); err != nil {
					changed <- err
					return
				}
				if len(resp.Events) > 0 {
					changed <- nil
					return
				}
			}
			changed <- wctx.Err()
		}()
	}
	select {
	case err := <-changed:
		if err == nil && ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
