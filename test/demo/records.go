package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The ids of the demo's storages, volume and snapshot (docs/contract.md
// §2): cluster 5's storage 11 is the source, cluster 6's storage 13 the
// target.
const (
	srcCluster, srcStorage = 5, 11
	tgtCluster, tgtStorage = 6, 13
	volumeID               = 7
	snapshotID             = 21
	storageType            = "openstack.storage.type.nfs"
)

var (
	envKey  = fmt.Sprintf("mirror_environment/storage.%d.%d", srcStorage, tgtStorage)
	volKey  = fmt.Sprintf("mirror_volume/storage.%d.%d/volume.%d", srcStorage, tgtStorage, volumeID)
	snapKey = fmt.Sprintf("%s/snapshot.%d", volKey, snapshotID)
)

type storageRef struct {
	ClusterID uint64 `json:"cluster_id"`
	StorageID uint64 `json:"storage_id"`
}

var (
	srcRef = storageRef{srcCluster, srcStorage}
	tgtRef = storageRef{tgtCluster, tgtStorage}
)

// status is the part of a status record (§2.4) the demo shows.
type status struct {
	State    string `json:"state_code"`
	Progress int    `json:"progress"`
	LastSync string `json:"last_sync_time"`
	Lag      string `json:"lag"`
	Reason   *struct {
		Code     string `json:"code"`
		Contents string `json:"contents"`
	} `json:"error_reason"`
}

func putJSON(ctx context.Context, cli *clientv3.Client, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := cli.Put(ctx, key, string(b)); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// seedStorages writes what the cluster manager writes: the two storages
// and their metadata.
func seedStorages(ctx context.Context, cli *clientv3.Client, w *workspace) error {
	for _, kv := range []struct {
		ref  storageRef
		meta any
	}{
		{srcRef, map[string]any{"agent_token_file": w.tokenFile}},
		{tgtRef, map[string]any{"directory": w.target, "sync_interval": "2s", "block_size": blockSize}},
	} {
		key := fmt.Sprintf("clusters/%d/storages/%d", kv.ref.ClusterID, kv.ref.StorageID)
		rec := map[string]any{"cluster_id": kv.ref.ClusterID, "storage_id": kv.ref.StorageID, "type": storageType, "backend_name": "nfs"}
		if err := putJSON(ctx, cli, key, rec); err != nil {
			return err
		}
		if err := putJSON(ctx, cli, key+"/metadata", kv.meta); err != nil {
			return err
		}
	}
	return nil
}

// putEnvironment writes what the DR manager writes to pair the storages.
func putEnvironment(ctx context.Context, cli *clientv3.Client) error {
	rec := map[string]any{"source_cluster_storage": srcRef, "target_cluster_storage": tgtRef}
	if err := putJSON(ctx, cli, envKey, rec); err != nil {
		return err
	}
	return putOperation(ctx, cli, envKey, "start")
}

// putVolume writes what the DR manager writes to replicate a volume.
func putVolume(ctx context.Context, cli *clientv3.Client, uuid, agentIP string, agentPort int) error {
	rec := map[string]any{
		"source_cluster_storage": srcRef, "target_cluster_storage": tgtRef,
		"source_volume": map[string]any{"cluster_id": srcCluster, "volume_id": volumeID, "volume_uuid": uuid},
		"source_agent":  map[string]any{"ip": agentIP, "port": agentPort},
	}
	if err := putJSON(ctx, cli, volKey, rec); err != nil {
		return err
	}
	return putOperation(ctx, cli, volKey, "start")
}

func putOperation(ctx context.Context, cli *clientv3.Client, key, op string) error {
	return putJSON(ctx, cli, key+"/operation", map[string]any{"operation": op})
}

// getStatus reads key's status; ok is false when there is none.
func getStatus(ctx context.Context, cli *clientv3.Client, key string) (st status, ok bool, err error) {
	resp, err := cli.Get(ctx, key+"/status")
	if err != nil {
		return status{}, false, fmt.Errorf("get %s/status: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return status{}, false, nil
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil {
		return status{}, false, fmt.Errorf("%s/status: %w", key, err)
	}
	return st, true, nil
}

// exists says whether key is in etcd.
func exists(ctx context.Context, cli *clientv3.Client, key string) (bool, error) {
	resp, err := cli.Get(ctx, key, clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("get %s: %w", key, err)
	}
	return resp.Count > 0, nil
}

// pollEvery is how often the demo reads a status, as the DR manager would.
const pollEvery = 100 * time.Millisecond

// watchStatus reads key's status until done says so, calling change at
// every new state (and progress). It fails on ctx's end and when the
// status is "error" for longer than errGrace (mirrord retries errors:
// a short one is part of the story, a lasting one is not).
func watchStatus(ctx context.Context, cli *clientv3.Client, key string, change func(st status, ok bool), done func(st status, ok bool) bool) error {
	var last status
	var lastOK, first = false, true
	var errSince time.Time
	const errGrace = 10 * time.Second
	for {
		st, ok, err := getStatus(ctx, cli, key)
		if err != nil {
			return err
		}
		if first || ok != lastOK || st.State != last.State || st.Progress != last.Progress {
			change(st, ok)
			last, lastOK, first = st, ok, false
		}
		if done(st, ok) {
			return nil
		}
		if ok && st.State == "error" {
			if errSince.IsZero() {
				errSince = time.Now()
			} else if time.Since(errSince) > errGrace {
				return fmt.Errorf("%s stays in error: %s", key, reasonOf(st))
			}
		} else {
			errSince = time.Time{}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s (state %q, %s): %w", key, last.State, reasonOf(last), ctx.Err())
		case <-time.After(pollEvery):
		}
	}
}

func reasonOf(st status) string {
	if st.Reason == nil {
		return "no reason given"
	}
	return st.Reason.Code + ": " + st.Reason.Contents
}
