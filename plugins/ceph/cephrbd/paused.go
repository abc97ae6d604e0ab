package cephrbd

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/ceph/go-ceph/rados"
)

// A pause is a fact of the cluster: one key per paused image in the
// target pool's metadata (pausedKey), so it holds whichever host runs
// rbd-mirror, and through restarts of rbd-mirror, of the plugin and of
// the host. rbd-mirror itself holds a stop in memory only; the
// supervisor of every rbd-mirror the plugin runs applies these records
// again (rbdmirror_pauses.go).

// pausedImage is one paused image's record: its replayer's name
// ("pool/image") and the other names the replayer may have
// ("pool/<global id>" while it bootstraps).
type pausedImage struct {
	Spec    string   `json:"spec"`
	Aliases []string `json:"aliases,omitempty"`
}

// names are every replayer name of the image.
func (p pausedImage) names() []string { return append([]string{p.Spec}, p.Aliases...) }

// pausedImages reads the paused images of envID ("" for every
// environment's) from the target pool io, by spec.
func pausedImages(ctx context.Context, io *rados.IOContext, envID string) (map[string]pausedImage, error) {
	kv, err := call(ctx, func() (map[string]string, error) { return listPoolMeta(io, pausedPrefix(envID)) })
	if err != nil {
		return nil, fmt.Errorf("read the paused images: %w", err)
	}
	out := map[string]pausedImage{}
	for k, v := range kv {
		rest := strings.TrimPrefix(k, pausedPrefix(envID))
		if envID != "" && strings.Contains(rest, ".") {
			continue // another environment whose id starts with envID + "."
		}
		var p pausedImage
		if json.Unmarshal([]byte(v), &p) == nil && p.Spec != "" {
			out[p.Spec] = p
		}
	}
	return out, nil
}

// isPaused says whether the image is paused in envID.
func isPaused(ctx context.Context, io *rados.IOContext, envID, image string) (bool, error) {
	ok, err := call(ctx, func() (bool, error) {
		_, ok, err := getPoolMeta(io, pausedKey(envID, image))
		return ok, err
	})
	if err != nil {
		return false, fmt.Errorf("read whether %s is paused: %w", image, err)
	}
	return ok, nil
}

// setPaused records the image (spec, with its replayer's other names) as
// paused, or removes the record.
func setPaused(ctx context.Context, io *rados.IOContext, envID, image string, paused bool, spec string, aliases ...string) error {
	key := pausedKey(envID, image)
	var err error
	if paused {
		data, _ := json.Marshal(pausedImage{Spec: spec, Aliases: slices.Clip(aliases)})
		err = do(ctx, func() error { return setPoolMeta(io, key, string(data)) })
	} else {
		err = do(ctx, func() error { return removePoolMeta(io, key) })
	}
	if err != nil {
		return fmt.Errorf("record %s as paused=%v in the target pool's metadata: %w", spec, paused, err)
	}
	return nil
}
