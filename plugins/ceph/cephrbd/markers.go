package cephrbd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
)

// marker records a prepared environment and the storages it uses, in
// <state>/<env>.prepared.
type marker struct {
	Source string `json:"source"`
	Target string `json:"target"`
	// TargetSite is the target cluster's mirror site name: environments
	// with the same one run their rbd-mirror daemons on one cluster.
	TargetSite string `json:"target_site,omitempty"`
}

func (b *Backend) markerPath(envID string) string {
	return filepath.Join(b.stateDir, envID+".prepared")
}

func (b *Backend) prepared(envID string) bool {
	_, err := os.Stat(b.markerPath(envID))
	return err == nil
}

func (b *Backend) writeMarker(envID string, m marker) error {
	data, _ := json.Marshal(m)
	return writePrivate(b.markerPath(envID), data)
}

func readMarker(path string) (marker, bool) {
	var m marker
	data, err := os.ReadFile(path)
	return m, err == nil && json.Unmarshal(data, &m) == nil
}

// envMarker is a prepared environment's id and marker.
type envMarker struct {
	envID string
	marker
}

// otherMarkers returns the markers of the prepared environments other
// than envID, in the order of their ids.
func (b *Backend) otherMarkers(envID string) []envMarker {
	var out []envMarker
	paths, _ := filepath.Glob(filepath.Join(b.stateDir, "*.prepared"))
	for _, p := range paths {
		if p == b.markerPath(envID) {
			continue
		}
		if m, ok := readMarker(p); ok {
			out = append(out, envMarker{strings.TrimSuffix(filepath.Base(p), ".prepared"), m})
		}
	}
	return out
}

// storageInUse says whether a prepared environment other than envID uses
// the storage key.
func (b *Backend) storageInUse(key, envID string) bool {
	for _, m := range b.otherMarkers(envID) {
		if m.Source == key || m.Target == key {
			return true
		}
	}
	return false
}
