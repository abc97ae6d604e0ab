package nfsfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// The target directory holds, besides the copies, what another host's
// plugin must know (the SDK contract's several-hosts rule), under
// stateDir:
//
//	volume-{uuid}                        the copy (a standalone volume after a stop)
//	volume-{uuid}.snapshot-{snap}        a recovery point: the copy as of one sync
//	.mirror/environments/{env}.json      the environment is prepared
//	.mirror/volume-{uuid}/replication.json  the volume replicates: from where, paused
//	.mirror/volume-{uuid}/points/{snap}.json  a recovery point asked for, and whether it is made
//	.mirror/volume-{uuid}/...            the copy engine's state (deltasync)
//	.mirror/leftovers/volume-{uuid}.json what a stop or destroy left behind
const stateDir = ".mirror"

func volumeName(uuid string) string          { return "volume-" + uuid }
func pointName(uuid, snap string) string     { return volumeName(uuid) + ".snapshot-" + snap }
func volumeStateDir(dir, uuid string) string { return filepath.Join(dir, stateDir, volumeName(uuid)) }
func replicationPath(dir, uuid string) string {
	return filepath.Join(volumeStateDir(dir, uuid), "replication.json")
}
func pointsDir(dir, uuid string) string { return filepath.Join(volumeStateDir(dir, uuid), "points") }
func pointRecordPath(dir, uuid, snap string) string {
	return filepath.Join(pointsDir(dir, uuid), snap+".json")
}
func environmentPath(dir, env string) string {
	return filepath.Join(dir, stateDir, "environments", env+".json")
}
func leftoverPath(dir, uuid string) string {
	return filepath.Join(dir, stateDir, "leftovers", volumeName(uuid)+".json")
}

// replication is a volume's replication record.
type replication struct {
	Environment string    `json:"environment"`
	VolumeID    uint64    `json:"volume_id"`
	Agent       string    `json:"agent"`
	Started     time.Time `json:"started"`
	// Paused stops the syncs; Stopping, set by a stop waiting for the
	// first copy, overrides it: the copy must get on by itself.
	Paused   bool `json:"paused,omitempty"`
	Stopping bool `json:"stopping,omitempty"`
}

// point is a recovery point asked for: made from the first sync that
// begins after Asked.
type point struct {
	SnapshotID uint64    `json:"snapshot_id"`
	Asked      time.Time `json:"asked"`
	// Made is when the copy was complete on the target; zero until then.
	Made time.Time `json:"made,omitzero"`
	// Of is when the sync it was copied from began reading the source.
	Of time.Time `json:"of,omitzero"`
}

// leftover is what a stop or destroy could not clean, for FindLeftovers.
type leftover struct {
	Kind        string    `json:"kind"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Remedy      string    `json:"remedy"`
	When        time.Time `json:"when"`
}

// readJSON reads a record; ok is false when it does not exist.
func readJSON(path string, v any) (ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}

// writeJSON writes a record atomically and durably: a temporary file,
// fsynced, renamed over the record, the directory fsynced.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: a no-op
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// removeDurably removes a file or tree and fsyncs its directory; a
// missing one is no error.
func removeDurably(path string) error {
	if err := os.RemoveAll(path); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
