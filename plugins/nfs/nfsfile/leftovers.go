package nfsfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// FindLeftovers implements sdk.Backend. A source storage holds nothing
// of the plugin's (the agent keeps no state); a target directory holds
// environment and replication records, copies and what a destroy kept.
func (b *Backend) FindLeftovers(ctx context.Context, q sdk.LeftoverQuery) ([]sdk.Leftover, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var m targetMeta
	if err := decodeMeta(q.Storage, &m); err != nil {
		return nil, err
	}
	if m.Directory == "" {
		return nil, nil // a source storage
	}
	tgt, err := parseTarget(q.Storage)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(tgt.dir); err != nil {
		return nil, fmt.Errorf("storage %s: %w", storageName(q.Storage), err)
	}
	envs := map[string]bool{}
	for _, e := range q.Environments {
		envs[e.ID] = true
	}
	vols := map[string]bool{}
	for _, v := range q.Volumes {
		vols[v.VolumeUUID] = true
	}
	var out []sdk.Leftover

	envFiles, _ := filepath.Glob(filepath.Join(tgt.dir, stateDir, "environments", "*.json"))
	for _, f := range envFiles {
		id := strings.TrimSuffix(filepath.Base(f), ".json")
		if !envs[id] {
			out = append(out, sdk.Leftover{Kind: "pairing", Name: fmt.Sprintf("environment %s in %s", id, tgt.dir),
				Description: "the environment is prepared in the target directory, but no environment record names it",
				Remedy:      "rm " + f})
		}
	}
	entries, err := os.ReadDir(filepath.Join(tgt.dir, stateDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		uuid, ok := strings.CutPrefix(e.Name(), "volume-")
		if !ok || !e.IsDir() || vols[uuid] {
			continue
		}
		var rec replication
		if found, err := readJSON(replicationPath(tgt.dir, uuid), &rec); err != nil || !found {
			continue
		}
		out = append(out, sdk.Leftover{Kind: "volume", Name: fmt.Sprintf("file %s in %s", volumeName(uuid), tgt.dir),
			Description: fmt.Sprintf("replicated for environment %s from agent %s, but no mirror volume record names it", rec.Environment, rec.Agent),
			Remedy: fmt.Sprintf("keep the copy: rm -r %s; or delete it too: rm -r %s %s",
				volumeStateDir(tgt.dir, uuid), volumeStateDir(tgt.dir, uuid), filepath.Join(tgt.dir, volumeName(uuid)))})
	}
	los, _ := filepath.Glob(filepath.Join(tgt.dir, stateDir, "leftovers", "volume-*.json"))
	for _, f := range los {
		var lo leftover
		if found, err := readJSON(f, &lo); err != nil || !found {
			continue
		}
		out = append(out, sdk.Leftover{Kind: lo.Kind, Name: lo.Name, Description: lo.Description,
			Remedy: lo.Remedy + "; then: rm " + f})
	}
	b.mu.Lock()
	for uuid, r := range b.runners {
		if !vols[uuid] && r.vol.Environment.Target.StorageID == q.Storage.StorageID && r.vol.Environment.Target.ClusterID == q.Storage.ClusterID {
			out = append(out, sdk.Leftover{Kind: "process", Name: "sync loop of " + volumeName(uuid) + " on this host",
				Description: "syncs a volume no mirror volume record names", Remedy: "destroy the volume, or restart the plugin"})
		}
	}
	b.mu.Unlock()
	return out, nil
}
