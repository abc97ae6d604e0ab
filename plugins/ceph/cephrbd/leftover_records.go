package cephrbd

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/ceph/go-ceph/rados"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// A call that could not finish on a storage it could not reach (a stop,
// destroy or teardown on the day a site is lost) records what it left in
// the pool metadata of the storage it could reach, where FindLeftovers
// finds it from any host until the thing is cleaned: one key per
// environment and image (or per environment, image ""), its value the
// sdk.Leftover as JSON, without secrets. A teardown does not remove
// these: they describe what is still on the lost side.

// leftoverPrefix starts the keys of envID's recorded leftovers; "" for
// every environment's.
func leftoverPrefix(envID string) string {
	if envID == "" {
		return metaPrefix + "leftover."
	}
	return metaPrefix + "leftover." + envID + "."
}

// leftoverKey names one record: the environment's own when image is "".
func leftoverKey(envID, image string) string {
	if image == "" {
		return leftoverPrefix(envID) + "environment"
	}
	return leftoverPrefix(envID) + image
}

// recordLeftover writes (or replaces) one record.
func recordLeftover(ctx context.Context, io *rados.IOContext, envID, image string, l sdk.Leftover) error {
	data, err := json.Marshal(l)
	if err != nil {
		return err
	}
	key := leftoverKey(envID, image)
	if err := do(ctx, func() error { return setPoolMeta(io, key, string(data)) }); err != nil {
		return fmt.Errorf("record leftover %s: %w", key, err)
	}
	return nil
}

// clearLeftover removes one record, once what it described is cleaned; a
// missing one is fine.
func clearLeftover(ctx context.Context, io *rados.IOContext, envID, image string) error {
	key := leftoverKey(envID, image)
	if err := do(ctx, func() error { return removePoolMeta(io, key) }); err != nil {
		return fmt.Errorf("remove leftover record %s: %w", key, err)
	}
	return nil
}

// recordedLeftovers reads every record in a pool, sorted by key. A value
// that does not decode is still listed, by its key.
func recordedLeftovers(ctx context.Context, io *rados.IOContext) ([]sdk.Leftover, error) {
	kv, err := call(ctx, func() (map[string]string, error) { return listPoolMeta(io, leftoverPrefix("")) })
	if err != nil {
		return nil, fmt.Errorf("list leftover records: %w", err)
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]sdk.Leftover, 0, len(keys))
	for _, k := range keys {
		var l sdk.Leftover
		if err := json.Unmarshal([]byte(kv[k]), &l); err != nil || l.Name == "" {
			l = sdk.Leftover{Kind: "record", Name: "pool metadata key " + k,
				Description: "a leftover record this plugin cannot read",
				Remedy: "read it with `rados -p POOL getomapval rbd_info metadata_" + k + " /dev/stdout`, clean what it names, " +
					"then `rados -p POOL rmomapkey rbd_info metadata_" + k + "`"}
		}
		out = append(out, l)
	}
	return out, nil
}
