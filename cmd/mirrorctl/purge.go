package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/core"
)

// purgeOptions are purge's flags.
type purgeOptions struct {
	yes   bool
	force bool
}

func (o *purgeOptions) flags(fs *flag.FlagSet) {
	fs.BoolVar(&o.yes, "yes", false, "delete, without asking (without it: a dry run, or a question on a terminal)")
	fs.BoolVar(&o.force, "force", false, "purge everything even while daemons run (they lose their leaderships and announcements)")
}

// runPurge is `mirrorctl purge [NAME...]`: the safe `etcdctl del --prefix
// mirror`. It lists exactly the keys it would delete, under the mirror
// prefixes only (docs/contract.md §2.1: mirror_environment/,
// mirror_volume/ and the leader prefix; never clusters/, the cluster
// manager's, nor another key that merely starts with "mirror"), and
// deletes them only with --yes or a yes on a terminal. With names it
// deletes only the keys of those environments (their volumes included)
// or volumes.
func (e *env) runPurge(ctx context.Context, args []string) int {
	var o purgeOptions
	cfg, rest, err := e.load("purge", args, o.flags)
	var names []core.ParsedKey
	for _, n := range rest {
		if err != nil {
			break
		}
		var p core.ParsedKey
		if p, err = parseName(n); err == nil && p.Kind != core.KindEnvironment && p.Kind != core.KindVolume {
			err = usageError{fmt.Errorf("name %q: want an environment or a volume", n)}
		}
		names = append(names, p)
	}
	if err == nil {
		err = checkLeaderPrefix(cfg.Etcd.LeaderPrefix)
	}
	if err != nil {
		return e.exitFor("purge", err)
	}
	s, closeStore, err := connect(ctx, cfg)
	if err != nil {
		return e.exitFor("purge", err)
	}
	defer closeStore()
	k, err := s.read(ctx, s.mirrorPrefixes()...)
	if err != nil {
		return e.exitFor("purge", err)
	}
	doomed := s.purgeKeys(k, names)
	if len(doomed) == 0 {
		fmt.Fprintln(e.stdout, "nothing to purge: no mirror key matches")
		return exitOK
	}
	if len(names) == 0 && !o.force {
		if live := s.liveDaemons(ctx, k); len(live) > 0 {
			return e.exitFor("purge", refusedError{fmt.Errorf("daemons are running (%s): stop them first, or purge single environments or volumes by name, or use --force; nothing deleted", strings.Join(live, ", "))})
		}
	}
	verb := "would delete"
	if o.yes {
		verb = "deleting"
	}
	fmt.Fprintf(e.stdout, "%s %d key(s) (etcd revision %d):\n", verb, len(doomed), k.rev)
	for _, key := range doomed {
		fmt.Fprintf(e.stdout, "  %s\n", key)
	}
	if !o.yes {
		if !isTerminal(e.stdin) || !e.confirm(len(doomed)) {
			fmt.Fprintln(e.stdout, "dry run: nothing deleted; run again with --yes to delete these keys")
			return exitOK
		}
	}
	deleted, changed, err := s.deleteKeys(ctx, k, doomed)
	fmt.Fprintf(e.stdout, "deleted %d key(s)\n", deleted)
	if err != nil {
		return e.exitFor("purge", err)
	}
	if len(changed) > 0 {
		return e.exitFor("purge", fmt.Errorf("%d key(s) changed since the listing and were kept (run purge again to see them): %s", len(changed), strings.Join(changed, ", ")))
	}
	return exitOK
}

// checkLeaderPrefix refuses a leader prefix that would make purge reach
// beyond mirror's keys.
func checkLeaderPrefix(p string) error {
	if p == "" || strings.HasPrefix(core.ClustersPrefix, p) || strings.HasPrefix(p, core.ClustersPrefix) {
		return usageError{fmt.Errorf("leader prefix %q would reach the cluster manager's keys: purge refuses it", p)}
	}
	return nil
}

// confirm asks on the terminal.
func (e *env) confirm(n int) bool {
	fmt.Fprintf(e.stderr, "delete these %d key(s)? type yes: ", n)
	line, _ := bufio.NewReader(e.stdin).ReadString('\n')
	return strings.TrimSpace(line) == "yes"
}

// purgeKeys lists the keys purge deletes, sorted: every key of k (read
// under the mirror prefixes only), or those of the named environments
// and volumes.
func (s *store) purgeKeys(k keys, names []core.ParsedKey) []string {
	if len(names) == 0 {
		return k.sorted("")
	}
	seen := map[string]bool{}
	var out []string
	add := func(keys ...string) {
		for _, key := range keys {
			if k.has(key) && !seen[key] {
				seen[key] = true
				out = append(out, key)
			}
		}
	}
	for _, p := range names {
		switch p.Kind {
		case core.KindEnvironment:
			ek := core.EnvironmentKey(p.Env)
			add(ek)
			add(k.sorted(ek + "/")...)
			add(k.sorted(core.EnvironmentVolumesPrefix(p.Env))...)
			add(core.LeaderKey(s.leaderPrefix, ek))
			add(k.sorted(core.LeaderKey(s.leaderPrefix, core.EnvironmentVolumesPrefix(p.Env)))...)
		case core.KindVolume:
			vk := core.VolumeKey(p.Volume)
			add(vk)
			add(k.sorted(core.VolumeChildrenPrefix(p.Volume))...)
			add(core.LeaderKey(s.leaderPrefix, vk))
		}
	}
	slices.Sort(out)
	return out
}

// liveDaemons names the daemons announced under the leader prefix whose
// lease is alive.
func (s *store) liveDaemons(ctx context.Context, k keys) []string {
	var live []string
	for _, key := range k.sorted(s.leaderPrefix + daemonsDir) {
		if s.leaseAlive(ctx, k.kv[key].Lease) {
			live = append(live, strings.TrimPrefix(key, s.leaderPrefix+daemonsDir))
		}
	}
	return live
}

// leaseAlive reports whether the lease still exists (a key without lease
// never expires: it counts as not alive).
func (s *store) leaseAlive(ctx context.Context, id int64) bool {
	if id == 0 {
		return false
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.cli.TimeToLive(cctx, clientv3.LeaseID(id))
	return err == nil && resp.TTL > 0
}

// deleteKeys deletes exactly the listed keys, each only if unchanged
// since the listing: a key written meanwhile (a daemon, the DR manager)
// is kept and returned.
func (s *store) deleteKeys(ctx context.Context, k keys, doomed []string) (deleted int, changed []string, err error) {
	const batch = 64 // well inside etcd's default 128 operations per transaction
	for len(doomed) > 0 {
		n := min(batch, len(doomed))
		part := doomed[:n]
		doomed = doomed[n:]
		var ifs []clientv3.Cmp
		var ops []clientv3.Op
		for _, key := range part {
			ifs = append(ifs, clientv3.Compare(clientv3.ModRevision(key), "=", k.kv[key].ModRevision))
			ops = append(ops, clientv3.OpDelete(key))
		}
		cctx, cancel := s.call(ctx)
		resp, err := s.cli.Txn(cctx).If(ifs...).Then(ops...).Commit()
		cancel()
		if err != nil {
			return deleted, changed, s.explain(err)
		}
		if resp.Succeeded {
			deleted += n
			continue
		}
		// Some key changed: one by one, keeping the changed ones.
		for i, key := range part {
			cctx, cancel := s.call(ctx)
			resp, err := s.cli.Txn(cctx).If(ifs[i]).Then(ops[i]).Commit()
			cancel()
			if err != nil {
				return deleted, changed, s.explain(err)
			}
			if resp.Succeeded {
				deleted++
			} else {
				changed = append(changed, key)
			}
		}
	}
	return deleted, changed, nil
}
