package memstorage

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// Leftover kinds memstorage reports (sdk.Leftover's Kind).
const (
	kindVolume  = "volume"  // replication still set up for a source volume
	kindCopy    = "copy"    // a copy on the target
	kindPairing = "pairing" // an environment's set-up on one storage
)

// record is a leftover a call could not clean, kept on the storage it was
// written to (the one it could reach, as a real plugin writes it into the
// surviving storage), until a later call cleans it.
type record struct {
	subject string // the volume UUID or environment ID it is about
	lo      sdk.Leftover
}

// record writes lo on storage k, in place of one of the same kind about
// the same subject. Callers hold mu.
func (b *Backend) record(k storageKey, subject string, lo sdk.Leftover) {
	b.forget(k, subject, lo.Kind)
	b.records[k] = append(b.records[k], record{subject: subject, lo: lo})
}

// forget drops storage k's record of this kind about subject. Callers
// hold mu.
func (b *Backend) forget(k storageKey, subject, kind string) {
	b.records[k] = slices.DeleteFunc(b.records[k], func(r record) bool {
		return r.subject == subject && r.lo.Kind == kind
	})
	if len(b.records[k]) == 0 {
		delete(b.records, k)
	}
}

// FindLeftovers implements sdk.Backend: what earlier calls recorded on
// q.Storage, then the environments prepared and the volumes replicated on
// it that q does not account for.
func (b *Backend) FindLeftovers(ctx context.Context, q sdk.LeftoverQuery) ([]sdk.Leftover, error) {
	k := keyOf(q.Storage)
	if err := enter(ctx, "find leftovers on storage %s", k); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.reach(q.Storage); err != nil {
		return nil, fmt.Errorf("find leftovers: %w", err)
	}
	var out []sdk.Leftover
	for _, r := range b.records[k] {
		out = append(out, r.lo)
	}
	envs := map[string]bool{}
	for _, e := range q.Environments {
		envs[e.ID] = true
	}
	for _, id := range slices.Sorted(maps.Keys(b.envs)) {
		p := b.envs[id]
		if !envs[id] && (p.source == k && p.onSource || p.target == k && p.onTarget) {
			out = append(out, sdk.Leftover{Kind: kindPairing,
				Name:        fmt.Sprintf("pairing of environment %s on storage %s", id, k),
				Description: "the environment is prepared, but the daemon's records hold no such environment",
				Remedy: "check that no daemon uses the environment, then tear it down " +
					"(TeardownEnvironment; forced if volumes still replicate)"})
		}
	}
	vols := map[string]bool{}
	for _, v := range q.Volumes {
		vols[v.VolumeUUID] = true
	}
	for _, id := range slices.Sorted(maps.Keys(b.vols)) {
		v := b.vols[id]
		if !vols[id] && v.state != sdk.ReplicationAbsent && (v.source == k || v.target == k) {
			out = append(out, sdk.Leftover{Kind: kindVolume,
				Name:        fmt.Sprintf("volume %s replicated from storage %s to storage %s", id, v.source, v.target),
				Description: "the volume is replicated, but the daemon's records hold no such volume",
				Remedy: fmt.Sprintf("check that no one replicates it on purpose, then stop it to keep its copy on storage %s, "+
					"or destroy its replication", v.target)})
		}
	}
	return out, nil
}

// words is a leftover as a line of a CleanupReport.
func words(lo sdk.Leftover) string {
	return lo.Name + ": " + lo.Description + "; " + lo.Remedy
}

// sourceStillMirrored: the volume's replication is still set up on its
// source, which was unreachable when what ended it on the target ran.
func sourceStillMirrored(vol sdk.Volume, what string) sdk.Leftover {
	src, dst := keyOf(vol.Environment.Source), keyOf(vol.Environment.Target)
	return sdk.Leftover{Kind: kindVolume,
		Name: fmt.Sprintf("volume %s on storage %s", vol.VolumeUUID, src),
		Description: fmt.Sprintf("replication to storage %s is still set up on the source: %s while storage %s was unreachable; "+
			"nothing replicates into that copy any more", dst, what, src),
		Remedy: fmt.Sprintf("once storage %s is back, decide which copy is the volume's, then end the replication "+
			"there (DestroyVolume)", src)}
}

// keptCopy: DestroyVolume kept the replicated copy, since without the
// source volume known intact it may be the volume's last one; why says
// what was not known.
func keptCopy(vol sdk.Volume, complete bool, why string) sdk.Leftover {
	src, dst := keyOf(vol.Environment.Source), keyOf(vol.Environment.Target)
	state := "complete"
	if !complete {
		state = "incomplete (its first copy had not finished)"
	}
	return sdk.Leftover{Kind: kindCopy,
		Name: fmt.Sprintf("copy of volume %s on storage %s", vol.VolumeUUID, dst),
		Description: fmt.Sprintf("DestroyVolume kept this %s copy as a standalone volume: %s, so it may be the volume's "+
			"last copy", state, why),
		Remedy: fmt.Sprintf("check the source volume on storage %s; delete this copy (DeleteTarget) only if that one is "+
			"intact, or keep the copy as the volume", src)}
}

// copyNotDeleted: DestroyVolume could not reach the target to delete the
// replicated copy.
func copyNotDeleted(vol sdk.Volume) sdk.Leftover {
	dst := keyOf(vol.Environment.Target)
	return sdk.Leftover{Kind: kindCopy,
		Name:        fmt.Sprintf("copy of volume %s on storage %s", vol.VolumeUUID, dst),
		Description: fmt.Sprintf("DestroyVolume could not delete this replicated copy: storage %s was unreachable", dst),
		Remedy:      fmt.Sprintf("once storage %s is back, destroy the volume's replication again (DestroyVolume)", dst)}
}

// pairingLeft: TeardownEnvironment could not reach this storage.
func pairingLeft(envID string, on storageKey) sdk.Leftover {
	return sdk.Leftover{Kind: kindPairing,
		Name:        fmt.Sprintf("pairing of environment %s on storage %s", envID, on),
		Description: fmt.Sprintf("TeardownEnvironment could not remove it: storage %s was unreachable", on),
		Remedy:      fmt.Sprintf("once storage %s is back, tear the environment down again", on)}
}

// forcedVolume: a forced TeardownEnvironment left the volume replicated.
func forcedVolume(volumeUUID string, src, dst storageKey) sdk.Leftover {
	return sdk.Leftover{Kind: kindVolume,
		Name:        fmt.Sprintf("volume %s replicated from storage %s to storage %s", volumeUUID, src, dst),
		Description: "still replicated: the environment was torn down by force, which deletes no volume or copy",
		Remedy:      "stop it to keep its copy, or destroy its replication"}
}
