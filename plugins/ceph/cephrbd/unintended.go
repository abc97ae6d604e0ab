package cephrbd

import (
	"context"
	"fmt"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// Unintended replicas: copies in a target pool that no volume of the
// environment asked for, which rbd-mirror made because the source pool
// feeds more than one target cluster (a layout set up before the layout
// checks, or by hand). The copy's mark (image_mark.go) names the
// environment it was made for. They are reported (EnvironmentStatus,
// FindLeftovers), never removed here: the remedy removes one copy, once
// the layout no longer brings it back.

// Bounds of one EnvironmentStatus: the non-primary images looked at (one
// omap read each), and the entries reported.
const (
	unintendedScanLimit   = 2000
	unintendedReportLimit = 20
)

// unintended lists the non-primary copies in the target pool marked for
// another environment, and, while the source pool feeds another target
// cluster too, those with no mark.
func (e *envConns) unintended(ctx context.Context, envID string) ([]string, error) {
	items, err := call(ctx, func() ([]rbd.MirrorImageInfoItem, error) { return rbd.MirrorImageInfoList(e.dstIO, nil, "", 0) })
	if err != nil {
		return nil, fmt.Errorf("list mirror-enabled images of pool %s on storage %s: %w", e.dst.m.Pool, e.dst.key(), err)
	}
	var out []string
	scanned, found := 0, 0
	var elsewhere *bool // whether the source pool feeds another target cluster: read once, when needed
	for _, it := range items {
		if it.Info.State != rbd.MirrorImageEnabled || it.Info.Primary {
			continue
		}
		if scanned++; scanned > unintendedScanLimit {
			out = append(out, fmt.Sprintf("only the first %d non-primary images of pool %s on storage %s were looked at", unintendedScanLimit, e.dst.m.Pool, e.dst.key()))
			break
		}
		type got struct {
			env string
			ok  bool
		}
		m, err := call(ctx, func() (got, error) {
			env, ok, err := imageMark(e.dstIO, it.ID)
			return got{env, ok}, err
		})
		if err != nil {
			return nil, fmt.Errorf("read the mark of image id %s in pool %s on storage %s: %w", it.ID, e.dst.m.Pool, e.dst.key(), err)
		}
		if m.ok && m.env == envID {
			continue
		}
		if !m.ok {
			if elsewhere == nil {
				v := e.feedsElsewhere(ctx, envID)
				elsewhere = &v
			}
			if !*elsewhere {
				continue // a volume started before marks existed, in a layout that serves it
			}
		}
		if found++; found > unintendedReportLimit {
			continue
		}
		name, err := call(ctx, func() (string, error) { return imageNameByID(e.dstIO, it.ID) })
		if err != nil {
			name = "id " + it.ID // being deleted: listed, without a command
		}
		out = append(out, unintendedLine(e.src, e.dst, e.srcSite, envID, name, m.env))
	}
	if found > unintendedReportLimit {
		out = append(out, fmt.Sprintf("and %d more unintended copies in pool %s on storage %s (`mirrord leftovers` lists them all)",
			found-unintendedReportLimit, e.dst.m.Pool, e.dst.key()))
	}
	return out, nil
}

// feedsElsewhere says whether the source pool feeds a target cluster
// other than this environment's: by its record, or by the tx peers of
// other clusters' rbd-mirror daemons. Unknown is no.
func (e *envConns) feedsElsewhere(ctx context.Context, envID string) bool {
	if f, ok, err := readFeed(ctx, e.srcIO); err == nil && ok && f.Environment != envID {
		if me, err := e.wantFeed(envID); err == nil && !f.sameCluster(me) {
			return true
		}
	}
	others, err := otherTxPeers(ctx, e.srcIO, e.dstSite)
	return err == nil && len(others) > 0
}

// unintendedLine is one EnvironmentHealth.Unintended entry: the copy
// image in dst's pool, made from src's pool for markedFor ("" unmarked),
// seen by environment envID.
func unintendedLine(src, dst side, srcSite, envID, image, markedFor string) string {
	why := fmt.Sprintf("made for environment %s", markedFor)
	if markedFor == "" {
		why = "with no environment mark (a volume started before this release, or mirror-enabled by hand: check that no volume of " +
			"environment " + envID + " replicates " + image + " before removing it)"
	}
	return fmt.Sprintf("image %s/%s on storage %s: a non-primary copy replicated from pool %s on storage %s (site %s), %s, "+
		"which no volume of environment %s asked for. %s",
		dst.m.Pool, image, dst.key(), src.m.Pool, src.key(), srcSite, why, envID, unintendedRemedy(src, dst, image))
}

// unintendedRemedy removes one unintended copy, once the layout no
// longer brings it back.
func unintendedRemedy(src, dst side, image string) string {
	spec := dst.m.Pool + "/" + image
	return remedy(fmt.Sprintf("rbd-mirror brings it back as long as pool %s on storage %s feeds more than one target cluster: "+
		"first give each target set a source pool of its own (docs/ceph.md, \"Layouts: 1:N and N:1\"), or tear down the environment "+
		"this copy's source image does not belong to. This copy is not the volume's intended one, which its own environment's target holds; "+
		"on storage %s:", src.m.Pool, src.key(), dst.key()),
		"rbd mirror image disable --force "+spec, "rbd snap purge "+spec, "rbd rm "+spec)
}

// unintendedCopy is FindLeftovers' entry for a copy marked for
// environment markedFor, which the query holds with another target.
func (p poolScan) unintendedCopy(name, markedFor string, mode rbd.ImageMirrorMode) sdk.Leftover {
	return sdk.Leftover{
		Kind: "copy",
		Name: fmt.Sprintf("image %s/%s on storage %s", p.sd.m.Pool, name, p.sd.key()),
		Description: fmt.Sprintf("an unintended non-primary copy (%s mode): made for environment %s, whose target is storage %s, "+
			"and replicated here too because the source pool feeds more than one target cluster",
			modeWord(mode), markedFor, p.h.envTargets[markedFor]),
		Remedy: unintendedRemedy(side{s: p.h.envSources[markedFor], m: meta{Pool: p.h.envSourcePools[markedFor]}}, p.sd, name),
	}
}
