package cephrbd

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

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

// Reading every copy's mark on every status poll costs one read per
// volume. While the layout feeds only the environment (feedsOnlyUs), no
// copy of another environment's can arrive but by hand, and a copy's
// mark does not change once there: each copy is read until its mark
// names the environment, once per plugin process. A copy with no mark
// yet (its metadata arrives with its first sync; or a volume started
// before marks existed) is read again on every poll, and so is one marked
// for another environment, which is reported. In any other layout every
// copy is read on every poll, as marks can change.

// checkedCopies remembers, per environment and target pool, the ids of
// the copies read and found marked for the environment while the layout
// fed only it. Ids are never reused, so the verdicts are facts about the
// cluster, whichever Backend read them.
var checkedCopies = struct {
	sync.Mutex
	m map[string]map[string]bool
}{m: map[string]map[string]bool{}}

// forgetCheckedCopies drops what checkedCopies holds for an environment
// (its teardown).
func forgetCheckedCopies(envID string) {
	checkedCopies.Lock()
	defer checkedCopies.Unlock()
	for k := range checkedCopies.m {
		if strings.HasPrefix(k, envID+" ") {
			delete(checkedCopies.m, k)
		}
	}
}

// unintendedMarkReads counts the marks unintended read (for tests).
var unintendedMarkReads atomic.Int64

// unintended lists the non-primary copies in the target pool marked for
// another environment, and, while the source pool feeds another target
// cluster too, those with no mark.
func (e *envConns) unintended(ctx context.Context, envID string) ([]string, error) {
	items, err := call(ctx, func() ([]rbd.MirrorImageInfoItem, error) { return rbd.MirrorImageInfoList(e.dstIO, nil, "", 0) })
	if err != nil {
		return nil, fmt.Errorf("list mirror-enabled images of pool %s on storage %s: %w", e.dst.m.Pool, e.dst.key(), err)
	}
	cacheKey := envID + " " + e.dst.key() + " " + e.dst.m.Pool
	var known, checked map[string]bool // nil unless the layout feeds only this environment
	if e.feedsOnlyUs(ctx, envID) {
		checkedCopies.Lock()
		known = checkedCopies.m[cacheKey]
		checkedCopies.Unlock()
		checked = map[string]bool{}
	}
	var elsewhere *bool // whether the source pool feeds another target cluster: read once, when needed
	if checked != nil {
		no := false
		elsewhere = &no
	}
	defer func() {
		checkedCopies.Lock()
		defer checkedCopies.Unlock()
		if checked == nil {
			delete(checkedCopies.m, cacheKey)
		} else {
			checkedCopies.m[cacheKey] = checked
		}
	}()
	var out []string
	scanned, found := 0, 0
	for _, it := range items {
		if it.Info.State != rbd.MirrorImageEnabled || it.Info.Primary {
			continue
		}
		if scanned++; scanned > unintendedScanLimit {
			out = append(out, fmt.Sprintf("only the first %d non-primary images of pool %s on storage %s were looked at", unintendedScanLimit, e.dst.m.Pool, e.dst.key()))
			break
		}
		if known[it.ID] {
			checked[it.ID] = true
			continue
		}
		type got struct {
			env string
			ok  bool
		}
		m, err := call(ctx, func() (got, error) {
			unintendedMarkReads.Add(1)
			env, ok, err := imageMark(e.dstIO, it.ID)
			return got{env, ok}, err
		})
		if err != nil {
			return nil, fmt.Errorf("read the mark of image id %s in pool %s on storage %s: %w", it.ID, e.dst.m.Pool, e.dst.key(), err)
		}
		if m.ok && m.env == envID {
			if checked != nil {
				checked[it.ID] = true
			}
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

// feedsOnlyUs says whether the layout can bring no copy of another
// environment's into the target pool: the source pool's record names
// this environment or its target cluster, no other cluster's rbd-mirror
// pulls from the source pool, and the target pool pulls from the source
// alone. Without a record (an environment prepared before records
// existed, until its next prepare writes one) or on any error, no.
func (e *envConns) feedsOnlyUs(ctx context.Context, envID string) bool {
	f, ok, err := readFeed(ctx, e.srcIO)
	if err != nil || !ok {
		return false
	}
	if f.Environment != envID {
		me, err := e.wantFeed(envID)
		if err != nil || !f.sameCluster(me) {
			return false
		}
	}
	if others, err := otherTxPeers(ctx, e.srcIO, e.dstSite); err != nil || len(others) > 0 {
		return false
	}
	ours, foreign, err := e.peers(ctx)
	return err == nil && ours != nil && foreign == nil
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
