package app

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// Finding what the plugins left on the storages (mirrord leftovers): after
// a reset, hand-deleted keys or a site's loss, an operator asks every
// storage's plugin what it made there that no record accounts for.

// StorageLeftovers is one storage's answer.
type StorageLeftovers struct {
	Storage   string // its key, clusters/{c}/storages/{s}
	Type      string
	Leftovers []ports.Leftover
	// Err: the plugin could not answer for this storage (unreachable, the
	// plugin failed); Leftovers is then empty.
	Err error
}

// SkippedStorage is a storage no plugin was asked about.
type SkippedStorage struct {
	Storage string
	Type    string // empty when the record could not be read
	Why     string
}

// LeftoverSurvey is what SurveyLeftovers found.
type LeftoverSurvey struct {
	// Storages are those a plugin was asked about, sorted by cluster and
	// storage id.
	Storages []StorageLeftovers
	// Skipped are those whose type no plugin serves, or whose record is
	// unusable.
	Skipped []SkippedStorage
	// Unusable names the environment and volume records that could not be
	// read: what they name may be listed as a leftover.
	Unusable []string
}

// Found counts the leftovers found.
func (s LeftoverSurvey) Found() int {
	n := 0
	for _, st := range s.Storages {
		n += len(st.Leftovers)
	}
	return n
}

// Unanswered lists the storages whose plugin could not answer.
func (s LeftoverSurvey) Unanswered() []StorageLeftovers {
	var out []StorageLeftovers
	for _, st := range s.Storages {
		if st.Err != nil {
			out = append(out, st)
		}
	}
	return out
}

// storageRecord is a storage as the store holds it.
type storageRecord struct {
	ref  core.StorageRef
	rec  core.Storage
	meta json.RawMessage
	err  error // the record or its metadata is unusable
}

// SurveyLeftovers reads every storage and every mirror environment and
// volume still recorded, and asks the plugin serving each storage's type
// what it left there (ports.StorageBackend.FindLeftovers), with the
// environments and volumes involving that storage; a leftover two
// storages report alike is listed with the first. Each read of the store
// is bounded by readTimeout, each plugin call by callTimeout. Only a store
// that cannot be read is an error; a storage its plugin cannot answer for
// is reported in the survey.
func SurveyLeftovers(ctx context.Context, kv ports.KV, backends ports.Backends, readTimeout, callTimeout time.Duration) (LeftoverSurvey, error) {
	var survey LeftoverSurvey
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	storages, err := readStorages(rctx, kv)
	cancel()
	if err != nil {
		return survey, err
	}
	rctx, cancel = context.WithTimeout(ctx, readTimeout)
	envs, vols, unusable, err := readMirrors(rctx, kv, storages)
	cancel()
	if err != nil {
		return survey, err
	}
	survey.Unusable = unusable
	// One thing found through two storages (a host's process serving
	// both of a pair) is listed once, with the first.
	seen := map[ports.Leftover]bool{}
	for _, s := range storages {
		key := core.StorageKey(s.ref)
		if s.err != nil {
			survey.Skipped = append(survey.Skipped, SkippedStorage{Storage: key, Type: s.rec.Type, Why: s.err.Error()})
			continue
		}
		backend, err := backends.For(ctx, s.rec.Type)
		if errors.Is(err, ports.ErrNoBackend) {
			survey.Skipped = append(survey.Skipped, SkippedStorage{Storage: key, Type: s.rec.Type, Why: err.Error()})
			continue
		}
		answer := StorageLeftovers{Storage: key, Type: s.rec.Type, Err: err}
		if err == nil {
			q := ports.LeftoverQuery{Storage: core.BackendStorage(s.rec, s.meta)}
			for _, env := range envs {
				if involves(env, s.ref) {
					q.Environments = append(q.Environments, env)
				}
			}
			for _, vol := range vols {
				if involves(vol.Environment, s.ref) {
					q.Volumes = append(q.Volumes, vol)
				}
			}
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			answer.Leftovers, answer.Err = backend.FindLeftovers(cctx, q)
			cancel()
		}
		if answer.Err != nil {
			answer.Leftovers = nil
		}
		answer.Leftovers = slices.DeleteFunc(answer.Leftovers, func(l ports.Leftover) bool {
			dup := seen[l]
			seen[l] = true
			return dup
		})
		survey.Storages = append(survey.Storages, answer)
	}
	return survey, ctx.Err()
}

func involves(env ports.Environment, ref core.StorageRef) bool {
	is := func(s ports.Storage) bool { return s.ClusterID == ref.ClusterID && s.StorageID == ref.StorageID }
	return is(env.Source) || is(env.Target)
}

// readStorages lists clusters/ and keeps the storages and their metadata,
// sorted by cluster and storage id.
func readStorages(ctx context.Context, kv ports.KV) ([]*storageRecord, error) {
	kvs, _, err := kv.List(ctx, core.ClustersPrefix)
	if err != nil {
		return nil, fmt.Errorf("read the storages (%s): %w", core.ClustersPrefix, err)
	}
	byRef := map[core.StorageRef]*storageRecord{}
	get := func(ref core.StorageRef) *storageRecord {
		if byRef[ref] == nil {
			byRef[ref] = &storageRecord{ref: ref}
		}
		return byRef[ref]
	}
	metas := map[core.StorageRef][]byte{}
	for _, e := range kvs {
		pk, err := core.ParseKey(e.Key)
		if err != nil {
			continue
		}
		switch pk.Kind {
		case core.KindStorage:
			s := get(pk.Storage)
			s.rec, s.err = core.DecodeStorage(pk.Storage, e.Value)
		case core.KindStorageMetadata:
			metas[pk.Storage] = e.Value
		}
	}
	var out []*storageRecord
	for ref, s := range byRef {
		if data, ok := metas[ref]; ok && s.err == nil {
			s.meta, s.err = core.DecodeStorageMetadata(ref, data)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *storageRecord) int {
		return cmp.Or(cmp.Compare(a.ref.ClusterID, b.ref.ClusterID), cmp.Compare(a.ref.StorageID, b.ref.StorageID))
	})
	return out, nil
}

// readMirrors reads the mirror environments and volumes still recorded,
// as the backend sees them; records it cannot use are named in unusable.
func readMirrors(ctx context.Context, kv ports.KV, storages []*storageRecord) (envs []ports.Environment, vols []ports.Volume, unusable []string, err error) {
	byRef := map[core.StorageRef]*storageRecord{}
	for _, s := range storages {
		byRef[s.ref] = s
	}
	pair := func(id core.EnvironmentID, src, tgt core.StorageRef) (ports.Environment, error) {
		s, t := byRef[src], byRef[tgt]
		for _, x := range []struct {
			ref core.StorageRef
			s   *storageRecord
		}{{src, s}, {tgt, t}} {
			if x.s == nil {
				return ports.Environment{}, fmt.Errorf("storage %s does not exist", core.StorageKey(x.ref))
			}
			if x.s.err != nil {
				return ports.Environment{}, x.s.err
			}
		}
		return core.BackendEnvironment(id, s.rec, t.rec, s.meta, t.meta)
	}

	envKVs, _, err := kv.List(ctx, core.EnvironmentPrefix)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read the mirror environments (%s): %w", core.EnvironmentPrefix, err)
	}
	for _, e := range envKVs {
		pk, perr := core.ParseKey(e.Key)
		if perr != nil || pk.Kind != core.KindEnvironment {
			continue
		}
		spec, err := core.DecodeEnvironment(pk.Env, e.Value)
		var env ports.Environment
		if err == nil {
			env, err = pair(pk.Env, spec.Source, spec.Target)
		}
		if err != nil {
			unusable = append(unusable, fmt.Sprintf("%s: %v", e.Key, err))
			continue
		}
		envs = append(envs, env)
	}

	volKVs, _, err := kv.List(ctx, core.VolumePrefix)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read the mirror volumes (%s): %w", core.VolumePrefix, err)
	}
	for _, e := range volKVs {
		pk, perr := core.ParseKey(e.Key)
		if perr != nil || pk.Kind != core.KindVolume {
			continue
		}
		mv, err := core.DecodeMirrorVolume(pk.Volume, e.Value)
		var env ports.Environment
		if err == nil {
			env, err = pair(pk.Volume.Env, mv.Source, mv.Target)
		}
		if err != nil {
			unusable = append(unusable, fmt.Sprintf("%s: %v", e.Key, err))
			continue
		}
		vols = append(vols, core.BackendVolume(env, mv))
	}
	return envs, vols, unusable, nil
}
