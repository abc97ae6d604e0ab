package cephrbd

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// FindLeftovers lists, for one storage, what the plugin made that no
// environment or volume of the query accounts for (after a reset of the
// daemon's records, or a lost site), and what earlier calls recorded
// they could not clean: leftovers_pool.go reads the storage's pool,
// leftovers_host.go this host's processes and files. It changes nothing,
// not even the state directory: a storage's files that are themselves a
// leftover must not come back with every look.

// findTimeout bounds one FindLeftovers call when its caller allows more.
const findTimeout = 30 * time.Second

// Leftover kinds, and the order in which they are listed: the order an
// operator cleans them in (a process that runs replicates again what is
// cleaned under it; a peer goes once no image uses it).
var leftoverKinds = []string{"process", "snapshot", "copy", "volume", "pairing", "record", "file"}

// FindLeftovers implements sdk.Backend.
func (b *Backend) FindLeftovers(ctx context.Context, q sdk.LeftoverQuery) ([]sdk.Leftover, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, findTimeout)
	defer cancel()
	m, err := parseMeta(q.Storage)
	if err != nil {
		return nil, err
	}
	h := accountedFor(q)
	sd, done, err := b.probeSide(q.Storage, m)
	if err != nil {
		return nil, err
	}
	defer done()
	found, err := b.poolLeftovers(ctx, sd, h)
	if err != nil {
		return nil, err
	}
	found = append(found, b.hostLeftovers(sd, h)...)
	return byKind(found), nil
}

// held is what a query accounts for on its storage.
type held struct {
	key string // the storage's key
	// envs are the environments by id, those of the volumes included.
	envs map[string]bool
	// asSource, asTarget: some environment has the storage as its source,
	// as its target.
	asSource, asTarget bool
	// sources, targets are the image names of the volumes replicated
	// from, into the storage.
	sources, targets map[string]bool
	// volumes are "<env>/<image>" of every volume.
	volumes map[string]bool
	// envTargets are the environments' target storage keys,
	// envSources and envSourcePools their source storages and pools.
	envTargets     map[string]string
	envSources     map[string]sdk.Storage
	envSourcePools map[string]string
}

func accountedFor(q sdk.LeftoverQuery) held {
	h := held{key: storageKey(q.Storage), envs: map[string]bool{},
		sources: map[string]bool{}, targets: map[string]bool{}, volumes: map[string]bool{},
		envTargets: map[string]string{}, envSources: map[string]sdk.Storage{}, envSourcePools: map[string]string{}}
	addEnv := func(env sdk.Environment) {
		h.envs[env.ID] = true
		h.envTargets[env.ID] = storageKey(env.Target)
		h.envSources[env.ID] = env.Source
		if m, err := parseMeta(env.Source); err == nil {
			h.envSourcePools[env.ID] = m.Pool
		}
		if storageKey(env.Source) == h.key {
			h.asSource = true
		}
		if storageKey(env.Target) == h.key {
			h.asTarget = true
		}
	}
	for _, env := range q.Environments {
		addEnv(env)
	}
	for _, v := range q.Volumes {
		addEnv(v.Environment)
		name := imageName(v)
		h.volumes[v.Environment.ID+"/"+name] = true
		if storageKey(v.Environment.Source) == h.key {
			h.sources[name] = true
		}
		if storageKey(v.Environment.Target) == h.key {
			h.targets[name] = true
		}
	}
	return h
}

// uses says whether the query holds a environment with the storage.
func (h held) uses() bool { return h.asSource || h.asTarget }

// probeSide is the storage with its conf and keyrings written to a
// private temporary directory, removed by done once connected: the
// storage's own files in the state directory may be one of the
// leftovers, which FindLeftovers must not write back.
func (b *Backend) probeSide(s sdk.Storage, m meta) (sd side, done func(), err error) {
	parent := b.stateDir
	if fi, err := os.Stat(parent); err != nil || !fi.IsDir() {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, ".find-leftovers-")
	if err != nil {
		return side{}, nil, fmt.Errorf("a private directory for storage %s's connection files: %w", storageKey(s), err)
	}
	done = func() { _ = os.RemoveAll(dir) }
	f, err := (&Backend{stateDir: dir}).writeStorageFiles(s, m)
	if err != nil {
		done()
		return side{}, nil, err
	}
	return side{s: s, m: m, files: f}, done, nil
}

// byKind orders leftovers by leftoverKinds, keeping the order within a
// kind.
func byKind(in []sdk.Leftover) []sdk.Leftover {
	out := make([]sdk.Leftover, 0, len(in))
	for _, k := range leftoverKinds {
		for _, l := range in {
			if l.Kind == k {
				out = append(out, l)
			}
		}
	}
	for _, l := range in {
		if !slices.Contains(leftoverKinds, l.Kind) {
			out = append(out, l)
		}
	}
	return out
}

// remedy writes a Remedy: what to check first, then the commands that
// clean, each in backquotes, to run in order.
func remedy(check string, commands ...string) string {
	var b strings.Builder
	if check != "" {
		b.WriteString("Check first: " + check + " ")
	}
	b.WriteString("Then run ")
	for i, c := range commands {
		if i > 0 {
			b.WriteString(", then ")
		}
		b.WriteString("`" + c + "`")
	}
	b.WriteString(".")
	return b.String()
}

// shellQuote quotes a path for a shell command, when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/+=:,@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
