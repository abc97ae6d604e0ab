// Command leftoverplugin is the plugin mirrord leftovers is tested with:
// memstorage, whose FindLeftovers answers what its flags script, since a
// memstorage forgets everything when its process ends. The scripted
// images of a storage are its leftovers unless a volume of the query
// names them; a storage with scripted images and no environment in the
// query has a leftover pairing too.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/memstorage"
)

type scripted struct {
	*memstorage.Backend
	images      map[string][]string // storage key → volume UUIDs with an image there
	unreachable []string            // storage keys
}

func storageKey(s sdk.Storage) string {
	return fmt.Sprintf("clusters/%d/storages/%d", s.ClusterID, s.StorageID)
}

func (b scripted) FindLeftovers(ctx context.Context, q sdk.LeftoverQuery) ([]sdk.Leftover, error) {
	key := storageKey(q.Storage)
	if slices.Contains(b.unreachable, key) {
		return nil, fmt.Errorf("storage %s: monitors unreachable: %w", key, sdk.ErrRetryable)
	}
	var out []sdk.Leftover
	images := b.images[key]
	if len(images) > 0 && len(q.Environments) == 0 {
		out = append(out, sdk.Leftover{Kind: "pairing", Name: "peer of pool volumes on storage " + key,
			Description: "no mirror environment record pairs this storage",
			Remedy:      "rbd mirror pool peer remove volumes <peer uuid>, once no image of the pool is mirrored"})
	}
	for _, uuid := range images {
		if slices.ContainsFunc(q.Volumes, func(v sdk.Volume) bool { return v.VolumeUUID == uuid }) {
			continue
		}
		out = append(out, sdk.Leftover{Kind: "volume", Name: "image volumes/volume-" + uuid + " on storage " + key,
			Description: "mirroring is enabled on it and no mirror volume record names it",
			Remedy:      "rbd mirror image disable volumes/volume-" + uuid})
	}
	return out, nil
}

func main() {
	types := flag.String("types", memstorage.DefaultType, "comma-separated storage types served")
	images := flag.String("images", "{}", `JSON: storage key → volume UUIDs with a mirrored image there`)
	unreachable := flag.String("unreachable", "", "comma-separated storage keys whose FindLeftovers fails")
	flag.Parse()
	b := scripted{Backend: memstorage.New(memstorage.Types(strings.Split(*types, ",")...), memstorage.AutoSource())}
	if err := json.Unmarshal([]byte(*images), &b.images); err != nil {
		fmt.Fprintln(os.Stderr, "leftoverplugin: -images:", err)
		os.Exit(2)
	}
	if *unreachable != "" {
		b.unreachable = strings.Split(*unreachable, ",")
	}
	sdk.Serve(b)
}
