package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/cdmdr/mirror/core"
)

// Finding is one leftover or inconsistency doctor found.
type Finding struct {
	Check string   `json:"check"`
	Key   string   `json:"key"`
	What  string   `json:"what"`
	Fix   string   `json:"fix"`
	Keys  []string `json:"keys,omitempty"`
}

// The checks, by the names doctor prints.
const (
	checkOrphanVolume     = "volume-without-environment"
	checkNoRecord         = "keys-without-record"
	checkUnowned          = "status-without-leader"
	checkNoMetadata       = "storage-without-metadata"
	checkMissingStorage   = "environment-storage-missing"
	checkDeadLeader       = "leader-without-live-daemon"
	checkStaleLeader      = "leader-of-nothing"
	checkNoBackend        = "no-plugin-for-storage-type"
	checkUnknownMirrorKey = "unknown-mirror-key"
)

type doctorOptions struct {
	output   string
	storages bool
	timeout  time.Duration
}

func (o *doctorOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.output, "o", "text", "output: text, or json for scripts")
	fs.BoolVar(&o.storages, "storages", false, "also ask the plugins of --plugin-dir what they left on the storages (as mirrord leftovers does)")
	fs.DurationVar(&o.timeout, "storage-timeout", time.Minute, "with --storages: how long each storage's plugin may take to answer")
}

// runDoctor is `mirrorctl doctor`: it reads etcd and explains what is
// left over or inconsistent. It changes nothing. What the plugins left on
// the storages themselves is asked with --storages, as `mirrord
// leftovers` asks it.
func (e *env) runDoctor(ctx context.Context, args []string) int {
	var o doctorOptions
	cfg, rest, err := e.load("doctor", args, o.flags)
	if err == nil && len(rest) > 0 {
		err = usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(rest, " "))}
	}
	if err == nil && o.output != "text" && o.output != "json" {
		err = usageError{fmt.Errorf("-o %q: want text or json", o.output)}
	}
	if err != nil {
		return e.exitFor("doctor", err)
	}
	s, closeStore, err := connect(ctx, cfg)
	if err != nil {
		return e.exitFor("doctor", err)
	}
	defer closeStore()
	k, err := s.read(ctx, append(s.mirrorPrefixes(), core.ClustersPrefix)...)
	if err != nil {
		return e.exitFor("doctor", err)
	}
	findings := s.diagnose(ctx, k)
	if o.storages {
		// The plugins' own lines would bury the findings: warnings only.
		log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		more, err := s.surveyStorages(ctx, cfg, o.timeout, log)
		if err != nil {
			return e.exitFor("doctor", err)
		}
		findings = append(findings, more...)
	}
	if o.output == "json" {
		data, _ := json.MarshalIndent(nonNil(findings), "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", data)
	} else {
		for _, f := range findings {
			fmt.Fprintf(e.stdout, "%s  %s\n    %s\n    fix: %s\n", f.Check, f.Key, f.What, f.Fix)
		}
		where := "in etcd"
		if o.storages {
			where = "in etcd and on the storages"
		}
		fmt.Fprintf(e.stdout, "%d finding(s) %s (etcd revision %d)\n", len(findings), where, k.rev)
		if !o.storages {
			fmt.Fprintln(e.stdout, "what the plugins left on the storages: mirrorctl doctor --storages (or mirrord leftovers)")
		}
	}
	if len(findings) > 0 {
		return exitFailed
	}
	return exitOK
}

// diagnose runs every check on one read.
func (s *store) diagnose(ctx context.Context, k keys) []Finding {
	var out []Finding
	add := func(f Finding) { out = append(out, f) }

	daemons := map[string]bool{} // announced daemons with a live lease
	for _, d := range s.liveDaemons(ctx, k) {
		daemons[d] = true
	}
	v := s.build(k)

	// Environments: records, storages, owners, backends.
	for _, env := range v.Environments {
		if !k.has(env.Key) {
			if len(k.sorted(env.Key+"/")) == 0 {
				continue // only volumes name it: reported with them
			}
			add(Finding{Check: checkNoRecord, Key: env.Key, Keys: k.sorted(env.Key + "/"),
				What: "an operation or status is left without its environment record: nothing will act on it",
				Fix:  "mirrorctl purge " + env.Name + " (or write the record again)"})
			continue
		}
		for _, ref := range []*core.StorageRef{env.Source, env.Target} {
			if ref != nil && !k.has(core.StorageKey(*ref)) {
				add(Finding{Check: checkMissingStorage, Key: env.Key,
					What: fmt.Sprintf("the environment names storage %s, which does not exist", core.StorageKey(*ref)),
					Fix:  "let the cluster manager write the storage, or stop the environment"})
			}
		}
		s.ownership(k, daemons, env.Key, env.Name, env.Status, env.Operation, add)
		s.noBackend(env.Key, env.Name, env.Status, add)
	}

	// Volumes: their environment, records, owners, backends.
	for _, vol := range v.Volumes {
		envKey := core.EnvironmentPrefix + vol.Environment
		keysOf := k.sorted(vol.Key + "/")
		if k.has(vol.Key) {
			keysOf = append([]string{vol.Key}, keysOf...)
		}
		switch {
		case !k.has(envKey):
			add(Finding{Check: checkOrphanVolume, Key: vol.Key, Keys: keysOf,
				What: fmt.Sprintf("%d key(s) of a volume whose environment %s is gone: no daemon can act on them", len(keysOf), envKey),
				Fix:  "mirrorctl purge " + vol.Name + " (after checking the storages: mirrord leftovers)"})
			continue
		case !k.has(vol.Key):
			add(Finding{Check: checkNoRecord, Key: vol.Key, Keys: keysOf,
				What: "an operation, status or snapshot is left without its mirror volume record: nothing will act on it",
				Fix:  "mirrorctl purge " + vol.Name + " (or write the record again)"})
			continue
		}
		s.ownership(k, daemons, vol.Key, vol.Name, vol.Status, vol.Operation, add)
		s.noBackend(vol.Key, vol.Name, vol.Status, add)
	}

	// Storages without metadata.
	for _, key := range k.sorted(core.ClustersPrefix) {
		p, err := core.ParseKey(key)
		if err == nil && p.Kind == core.KindStorage && !k.has(core.StorageMetadataKey(p.Storage)) {
			add(Finding{Check: checkNoMetadata, Key: key,
				What: "the storage has no metadata: no plugin can reach it (pool, credentials), so its environments stay in error",
				Fix:  "let the cluster manager write " + core.StorageMetadataKey(p.Storage)})
		}
	}

	// Leader keys: a live daemon behind each, and something to lead.
	for _, key := range k.sorted(s.leaderPrefix) {
		rest := strings.TrimPrefix(key, s.leaderPrefix)
		kv := k.kv[key]
		if strings.HasPrefix(rest, daemonsDir) {
			if !s.leaseAlive(ctx, kv.Lease) {
				add(Finding{Check: checkDeadLeader, Key: key,
					What: "a daemon announcement without a live lease: it never expires on its own",
					Fix:  "mirrorctl purge --yes --force, or etcdctl del " + key})
			}
			continue
		}
		holder := string(kv.Value)
		switch {
		case !s.leaseAlive(ctx, kv.Lease):
			add(Finding{Check: checkDeadLeader, Key: key,
				What: fmt.Sprintf("led by %q without a live lease (written by hand?): it never expires, and no daemon will take the lead", holder),
				Fix:  "etcdctl del " + key + " (daemons then campaign)"})
		case !daemons[holder]:
			add(Finding{Check: checkDeadLeader, Key: key,
				What: fmt.Sprintf("led by %q, which is not among the running daemons (%s)", holder, strings.Join(sortedSet(daemons), ", ")),
				Fix:  "it goes when its lease expires; if it stays, etcdctl del " + key})
		case !k.has(rest):
			add(Finding{Check: checkStaleLeader, Key: key,
				What: fmt.Sprintf("%q leads %s, which has no record", holder, rest),
				Fix:  "the daemon resigns it at its next look; if it stays, restart that daemon"})
		}
	}

	// Keys under the mirror prefixes that fit no form of the contract.
	for _, key := range append(k.sorted(core.EnvironmentPrefix), k.sorted(core.VolumePrefix)...) {
		if _, err := core.ParseKey(key); err != nil {
			add(Finding{Check: checkUnknownMirrorKey, Key: key,
				What: "a key under a mirror prefix that fits no key of docs/contract.md §2.1: every daemon ignores it",
				Fix:  "etcdctl del " + key + " if nobody needs it"})
		}
	}
	return out
}

// ownership reports a status nobody leads: no leader key although the
// resource has an operation to carry out.
func (s *store) ownership(k keys, daemons map[string]bool, key, name string, st *core.Status, op string, add func(Finding)) {
	if st == nil || op == "" || k.has(core.LeaderKey(s.leaderPrefix, key)) {
		return
	}
	why := "no daemon is running"
	if len(daemons) > 0 {
		why = "the running daemons (" + strings.Join(sortedSet(daemons), ", ") + ") have not taken it"
	}
	add(Finding{Check: checkUnowned, Key: key,
		What: fmt.Sprintf("%s is %s under %s and nobody leads it (no %s): %s; its status is not being kept up", name, st.StateCode, op, core.LeaderKey(s.leaderPrefix, key), why),
		Fix:  "start mirrord (mirrorctl get shows the leader once one takes it)"})
}

// noBackend reports a status saying no plugin serves the storage type:
// only destroy (a volume) or a forced stop (an environment) ends it.
func (s *store) noBackend(key, name string, st *core.Status, add func(Finding)) {
	if st == nil || st.ErrorReason == nil || !strings.HasSuffix(st.ErrorReason.Code, "-no_backend") {
		return
	}
	add(Finding{Check: checkNoBackend, Key: key,
		What: fmt.Sprintf("%s: %s; no daemon can act on it: a plain stop cannot end it", name, st.ErrorReason.Contents),
		Fix:  "install the storage type's plugin in every daemon's plugin directory; or end it without the plugin, leaving what it set up on the storages: mirrorctl volume destroy NAME for a volume, mirrorctl environment stop --force NAME for an environment once its volumes are gone"})
}

func sortedSet(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	slices.Sort(out)
	return out
}
