package cephrbd

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ceph/go-ceph/rados"
)

// marker records a prepared environment and the storages it uses, in the
// target pool's metadata (preparedKey), where every host sees it.
type marker struct {
	Source string `json:"source"`
	Target string `json:"target"`
	// TargetSite is the target cluster's mirror site name: environments
	// with the same one run their rbd-mirror daemons on one cluster.
	TargetSite string `json:"target_site,omitempty"`
	// Path is how the environment replicates: "" through rbd-mirror (so
	// markers of earlier releases keep their meaning), pathShip through
	// the plugin's ship loop (ship_path.go). Chosen at the first prepare
	// and kept.
	Path string `json:"path,omitempty"`
}

// pathShip is marker.Path of an environment served by the ship loop.
const pathShip = "ship"

// ship says whether the environment replicates through the ship loop.
func (m marker) ship() bool { return m.Path == pathShip }

// writeMarker records envID as prepared, on the target pool io.
func writeMarker(ctx context.Context, io *rados.IOContext, envID string, m marker) error {
	data, _ := json.Marshal(m)
	if err := do(ctx, func() error { return setPoolMeta(io, preparedKey(envID), string(data)) }); err != nil {
		return fmt.Errorf("record environment %s as prepared in the target pool's metadata: %w", envID, err)
	}
	return nil
}

// prepared says whether envID is prepared, from the target pool io. An
// environment the last release prepared on this host (a file in the
// state directory) is moved into the pool first (migrateLegacy).
func (b *Backend) prepared(ctx context.Context, io *rados.IOContext, envID string) (bool, error) {
	_, ok, err := b.preparedMarker(ctx, io, envID)
	return ok, err
}

// preparedMarker is prepared with the marker itself (zero when it does
// not decode: a marker of an older release may lack fields).
func (b *Backend) preparedMarker(ctx context.Context, io *rados.IOContext, envID string) (marker, bool, error) {
	if err := b.migrateLegacy(ctx, io, envID); err != nil {
		return marker{}, false, err
	}
	type got struct {
		v  string
		ok bool
	}
	r, err := call(ctx, func() (got, error) {
		v, ok, err := getPoolMeta(io, preparedKey(envID))
		return got{v, ok}, err
	})
	if err != nil {
		return marker{}, false, fmt.Errorf("read whether environment %s is prepared: %w", envID, err)
	}
	var m marker
	_ = json.Unmarshal([]byte(r.v), &m)
	return m, r.ok, nil
}

// removeMarker forgets that envID is prepared.
func removeMarker(ctx context.Context, io *rados.IOContext, envID string) error {
	return do(ctx, func() error { return removePoolMeta(io, preparedKey(envID)) })
}
