package core

import (
	"fmt"
	"strconv"
	"strings"
)

// StorageRef names one storage of one cluster, as the wire records do.
type StorageRef struct {
	ClusterID uint64 `json:"cluster_id"`
	StorageID uint64 `json:"storage_id"`
}

// EnvironmentID names an environment by its source and target storage ids,
// written "storage.{source}.{target}" in keys.
type EnvironmentID struct {
	Source uint64
	Target uint64
}

func (e EnvironmentID) String() string {
	return "storage." + strconv.FormatUint(e.Source, 10) + "." + strconv.FormatUint(e.Target, 10)
}

// ParseEnvironmentID parses "storage.{s}.{t}".
func ParseEnvironmentID(s string) (EnvironmentID, error) {
	rest, ok := strings.CutPrefix(s, "storage.")
	if !ok {
		return EnvironmentID{}, fmt.Errorf("environment id %s: want storage.{source}.{target}", Quote(s))
	}
	src, tgt, ok := strings.Cut(rest, ".")
	if !ok {
		return EnvironmentID{}, fmt.Errorf("environment id %s: want storage.{source}.{target}", Quote(s))
	}
	var id EnvironmentID
	var err error
	if id.Source, err = parseID(src); err != nil {
		return EnvironmentID{}, fmt.Errorf("environment id %s: source storage: %w", Quote(s), err)
	}
	if id.Target, err = parseID(tgt); err != nil {
		return EnvironmentID{}, fmt.Errorf("environment id %s: target storage: %w", Quote(s), err)
	}
	return id, nil
}

// VolumeRef names one mirror volume: its environment and source volume id.
type VolumeRef struct {
	Env      EnvironmentID
	VolumeID uint64
}

func (v VolumeRef) String() string { return VolumeKey(v) }

// SnapshotRef names one snapshot record of a mirror volume.
type SnapshotRef struct {
	Volume     VolumeRef
	SnapshotID uint64
}

func (s SnapshotRef) String() string { return SnapshotKey(s) }

// parseID parses a decimal id exactly as FormatUint writes it, so that
// parsing and formatting a key round-trips (no signs, no leading zeros).
func parseID(s string) (uint64, error) {
	if s == "" {
		return 0, fmt.Errorf("empty id")
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("id %s has a leading zero", Quote(s))
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("id %s is not a decimal number", Quote(s))
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("id %s: %w", Quote(s), err)
	}
	return n, nil
}
