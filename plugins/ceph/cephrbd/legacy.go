package cephrbd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/ceph/go-ceph/rados"
)

// The release before this one kept the prepared marker and the paused
// set in the state directory. migrateLegacy moves what it finds there for
// envID into the target pool's metadata, once per environment and plugin
// process, and removes the files; drop it one release later.
func (b *Backend) migrateLegacy(ctx context.Context, io *rados.IOContext, envID string) error {
	b.mu.Lock()
	done := b.migrated[envID]
	b.mu.Unlock()
	if done {
		return nil
	}
	markerFile := filepath.Join(b.stateDir, envID+".prepared")
	if data, err := os.ReadFile(markerFile); err == nil {
		var m marker
		if json.Unmarshal(data, &m) == nil {
			if err := writeMarker(ctx, io, envID, m); err != nil {
				return err
			}
		}
		if err := removeFile(markerFile); err != nil {
			return err
		}
		b.log.Info("moved the prepared marker into the target pool", "env", envID)
	}
	pausedFile := filepath.Join(b.stateDir, "paused", envID+".json")
	if data, err := os.ReadFile(pausedFile); err == nil {
		for spec, aliases := range legacyPaused(data) {
			if err := setPaused(ctx, io, envID, path.Base(spec), true, spec, aliases...); err != nil {
				return err
			}
		}
		if err := removeFile(pausedFile); err != nil {
			return err
		}
		b.log.Info("moved the paused set into the target pool", "env", envID)
	}
	b.mu.Lock()
	b.migrated[envID] = true
	b.mu.Unlock()
	return nil
}

// legacyPaused reads a paused file: {"pool/image": [aliases]}, or the
// first format, ["pool/image", ...].
func legacyPaused(data []byte) map[string][]string {
	set := map[string][]string{}
	if json.Unmarshal(data, &set) == nil {
		return set
	}
	var specs []string
	_ = json.Unmarshal(data, &specs)
	for _, s := range specs {
		set[s] = nil
	}
	return set
}

func removeFile(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}
