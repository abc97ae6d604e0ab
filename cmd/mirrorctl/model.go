package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/core"
)

// daemonsDir is where each daemon announces itself under the leader
// prefix (docs/contract.md §6: mirror_leader/daemons/{daemon id}).
const daemonsDir = "daemons/"

// keys is every key under some prefixes, read at one revision.
type keys struct {
	rev int64
	kv  map[string]*mvccpb.KeyValue
}

// read lists the prefixes at one revision (the first listing's).
func (s *store) read(ctx context.Context, prefixes ...string) (keys, error) {
	k := keys{kv: map[string]*mvccpb.KeyValue{}}
	for _, p := range prefixes {
		opts := []clientv3.OpOption{clientv3.WithPrefix()}
		if k.rev != 0 {
			opts = append(opts, clientv3.WithRev(k.rev))
		}
		cctx, cancel := s.call(ctx)
		resp, err := s.cli.Get(cctx, p, opts...)
		cancel()
		if err != nil {
			return keys{}, s.explain(fmt.Errorf("list %s: %w", p, err))
		}
		if k.rev == 0 {
			k.rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			k.kv[string(kv.Key)] = kv
		}
	}
	return k, nil
}

func (k keys) has(key string) bool { _, ok := k.kv[key]; return ok }

func (k keys) value(key string) []byte {
	if kv, ok := k.kv[key]; ok {
		return kv.Value
	}
	return nil
}

// sorted returns the keys starting with prefix, sorted.
func (k keys) sorted(prefix string) []string {
	var out []string
	for key := range k.kv {
		if strings.HasPrefix(key, prefix) {
			out = append(out, key)
		}
	}
	sort.Strings(out)
	return out
}

// Environment is one environment as mirrorctl shows it.
type Environment struct {
	Name      string           `json:"name"`
	Key       string           `json:"key"`
	Source    *core.StorageRef `json:"source,omitempty"`
	Target    *core.StorageRef `json:"target,omitempty"`
	Operation string           `json:"operation,omitempty"`
	Force     bool             `json:"force,omitempty"`
	Status    *core.Status     `json:"status,omitempty"`
	Leader    string           `json:"leader,omitempty"`
	Volumes   int              `json:"volumes"`
	Problem   string           `json:"problem,omitempty"`
}

// Volume is one mirror volume as mirrorctl shows it.
type Volume struct {
	Name        string       `json:"name"`
	Key         string       `json:"key"`
	Environment string       `json:"environment"`
	VolumeID    uint64       `json:"volume_id"`
	VolumeUUID  string       `json:"volume_uuid,omitempty"`
	Operation   string       `json:"operation,omitempty"`
	Status      *core.Status `json:"status,omitempty"`
	Leader      string       `json:"leader,omitempty"`
	Snapshots   int          `json:"snapshots"`
	Problem     string       `json:"problem,omitempty"`
}

// Snapshot is one snapshot record as mirrorctl shows it.
type Snapshot struct {
	Name         string       `json:"name"`
	Key          string       `json:"key"`
	Volume       string       `json:"volume"`
	SnapshotID   uint64       `json:"snapshot_id"`
	SnapshotName string       `json:"snapshot_name,omitempty"`
	SnapshotUUID string       `json:"snapshot_uuid,omitempty"`
	Deleted      bool         `json:"deleted,omitempty"`
	Status       *core.Status `json:"status,omitempty"`
	Problem      string       `json:"problem,omitempty"`
}

// view is everything mirrorctl shows, built from one read.
type view struct {
	Environments []Environment
	Volumes      []Volume
	Snapshots    []Snapshot
}

// mirrorPrefixes are the prefixes mirrorctl reads to show things.
func (s *store) mirrorPrefixes() []string {
	return []string{core.EnvironmentPrefix, core.VolumePrefix, s.leaderPrefix}
}

// build turns keys into the view. A key that fits no form of
// docs/contract.md §2.1 is left out (doctor reports it).
func (s *store) build(k keys) view {
	envs := map[string]*Environment{}
	vols := map[string]*Volume{}
	snaps := map[string]*Snapshot{}
	env := func(id core.EnvironmentID) *Environment {
		n := id.String()
		if envs[n] == nil {
			envs[n] = &Environment{Name: n, Key: core.EnvironmentKey(id)}
		}
		return envs[n]
	}
	vol := func(ref core.VolumeRef) *Volume {
		n := volumeName(ref)
		if vols[n] == nil {
			vols[n] = &Volume{Name: n, Key: core.VolumeKey(ref), Environment: ref.Env.String(), VolumeID: ref.VolumeID}
		}
		return vols[n]
	}
	snap := func(ref core.SnapshotRef) *Snapshot {
		n := strings.TrimPrefix(core.SnapshotKey(ref), core.VolumePrefix)
		if snaps[n] == nil {
			snaps[n] = &Snapshot{Name: n, Key: core.SnapshotKey(ref), Volume: volumeName(ref.Volume), SnapshotID: ref.SnapshotID}
		}
		return snaps[n]
	}
	status := func(data []byte, problem *string) *core.Status {
		st, err := core.DecodeStatus(data)
		if err != nil {
			*problem = "status unreadable: " + err.Error()
			return nil
		}
		return &st
	}
	for _, key := range k.sorted("") {
		data := k.value(key)
		p, err := core.ParseKey(key)
		if err != nil {
			continue
		}
		switch p.Kind {
		case core.KindEnvironment:
			e := env(p.Env)
			if spec, err := core.DecodeEnvironment(p.Env, data); err != nil {
				e.Problem = "record unusable: " + err.Error()
			} else {
				e.Source, e.Target = &spec.Source, &spec.Target
			}
		case core.KindEnvironmentOperation:
			e := env(p.Env)
			if rec, err := core.DecodeEnvironmentOperation(data); err != nil {
				e.Operation = "?"
				e.Problem = "operation unusable: " + err.Error()
			} else {
				e.Operation, e.Force = string(rec.Operation), rec.Force
			}
		case core.KindEnvironmentStatus:
			e := env(p.Env)
			e.Status = status(data, &e.Problem)
		case core.KindVolume:
			v := vol(p.Volume)
			env(p.Env).Volumes++
			if mv, err := core.DecodeMirrorVolume(p.Volume, data); err != nil {
				v.Problem = "record unusable: " + err.Error()
			} else {
				v.VolumeUUID = mv.SourceVolume.VolumeUUID
			}
		case core.KindVolumeOperation:
			v := vol(p.Volume)
			if op, err := core.DecodeVolumeOperation(data); err != nil {
				v.Operation = "?"
				v.Problem = "operation unusable: " + err.Error()
			} else {
				v.Operation = string(op)
			}
		case core.KindVolumeStatus:
			v := vol(p.Volume)
			v.Status = status(data, &v.Problem)
		case core.KindSnapshot:
			sn := snap(p.Snapshot)
			vol(p.Volume).Snapshots++
			if rec, err := core.DecodeSnapshotRecord(p.Snapshot, data); err != nil {
				sn.Problem = "record unusable: " + err.Error()
			} else {
				sn.SnapshotName, sn.SnapshotUUID, sn.Deleted = rec.SnapshotName, rec.SnapshotUUID, rec.Deleted
			}
		case core.KindSnapshotStatus:
			sn := snap(p.Snapshot)
			sn.Status = status(data, &sn.Problem)
		}
	}
	var out view
	for _, n := range sortedNames(envs) {
		e := envs[n]
		e.Leader = string(k.value(core.LeaderKey(s.leaderPrefix, e.Key)))
		if !k.has(e.Key) && e.Problem == "" {
			e.Problem = "no environment record"
		}
		out.Environments = append(out.Environments, *e)
	}
	for _, n := range sortedNames(vols) {
		v := vols[n]
		v.Leader = string(k.value(core.LeaderKey(s.leaderPrefix, v.Key)))
		if !k.has(v.Key) && v.Problem == "" {
			v.Problem = "no mirror volume record"
		}
		out.Volumes = append(out.Volumes, *v)
	}
	for _, n := range sortedNames(snaps) {
		sn := snaps[n]
		if !k.has(sn.Key) && sn.Problem == "" {
			sn.Problem = "no snapshot record"
		}
		out.Snapshots = append(out.Snapshots, *sn)
	}
	return out
}

// volumeName is a volume's name without the mirror_volume/ prefix:
// storage.11.13/volume.7.
func volumeName(ref core.VolumeRef) string {
	return strings.TrimPrefix(core.VolumeKey(ref), core.VolumePrefix)
}

// sortedNames sorts names numerically where they differ by an id
// (volume.7 before volume.10).
func sortedNames[T any](m map[string]*T) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return naturalLess(names[i], names[j]) })
	return names
}

// naturalLess compares strings with runs of digits compared as numbers.
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digits(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// parseName reads a name on the command line: storage.11.13,
// storage.11.13/volume.7 (optionally /snapshot.21), or a full key.
func parseName(name string) (core.ParsedKey, error) {
	n := strings.TrimSuffix(name, "/")
	for _, p := range []string{core.EnvironmentPrefix, core.VolumePrefix} {
		n = strings.TrimPrefix(n, p)
	}
	if !strings.Contains(n, "/") {
		id, err := core.ParseEnvironmentID(n)
		if err != nil {
			return core.ParsedKey{}, usageError{fmt.Errorf("name %q: want storage.{source}.{target}[/volume.{id}]", name)}
		}
		return core.ParsedKey{Kind: core.KindEnvironment, Env: id}, nil
	}
	p, err := core.ParseKey(core.VolumePrefix + n)
	if err != nil || (p.Kind != core.KindVolume && p.Kind != core.KindSnapshot) {
		return core.ParsedKey{}, usageError{fmt.Errorf("name %q: want storage.{source}.{target}[/volume.{id}]", name)}
	}
	return p, nil
}
