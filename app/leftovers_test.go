package app_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdmdr/mirror/adapters/fake"
	"github.com/cdmdr/mirror/app"
	"github.com/cdmdr/mirror/app/harness"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// askedBackend answers FindLeftovers with one leftover naming what the
// query held, and records the queries.
type askedBackend struct {
	*fake.Backend
	mu      sync.Mutex
	queries map[string]ports.LeftoverQuery // by storage "c/s"
	fail    string                         // a storage "c/s" it cannot reach
}

func (b *askedBackend) FindLeftovers(ctx context.Context, q ports.LeftoverQuery) ([]ports.Leftover, error) {
	key := fmt.Sprintf("%d/%d", q.Storage.ClusterID, q.Storage.StorageID)
	b.mu.Lock()
	b.queries[key] = q
	b.mu.Unlock()
	if key == b.fail {
		return nil, fmt.Errorf("storage %s unreachable: %w", key, ports.ErrRetryable)
	}
	return []ports.Leftover{
		{Kind: "process", Name: "rbd-mirror 42 on this host", Description: "d", Remedy: "kill 42"}, // the same from every storage
		{Kind: "volume", Name: "image on " + key, Description: "d", Remedy: "r"},
	}, nil
}

func (b *askedBackend) asked(key string) (envs, vols []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queries[key]
	for _, e := range q.Environments {
		envs = append(envs, e.ID)
	}
	for _, v := range q.Volumes {
		vols = append(vols, v.VolumeUUID)
	}
	return envs, vols
}

// TestSurveyLeftovers: each storage's plugin is asked with exactly the
// environments and volumes involving that storage; unusable records are
// named; storages no plugin serves, or whose record is unusable, are
// skipped; a storage its plugin cannot answer for is reported; what two
// storages report alike is listed once.
func TestSurveyLeftovers(t *testing.T) {
	kv := fake.NewKV()
	put := func(key, value string) {
		t.Helper()
		if _, err := kv.Put(context.Background(), key, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	storage := func(c, s uint64, typ string) {
		put(core.StorageKey(core.StorageRef{ClusterID: c, StorageID: s}), fmt.Sprintf(`{"cluster_id":%d,"storage_id":%d,"type":%q}`, c, s, typ))
	}
	storage(5, 11, harness.CephType)
	storage(6, 13, harness.CephType)
	storage(5, 12, harness.CephType)
	storage(6, 14, harness.CephType)
	storage(7, 21, "openstack.storage.type.netapp")
	put("clusters/5/storages/12/metadata", `["not an object"]`)
	put("clusters/5/volume/7", `{"cluster_id":5,"volume_id":7,"volume_uuid":"`+seedUUID+`"}`)
	put(envKey, envRecord)
	put("mirror_environment/storage.14.13", `{"source_cluster_storage":{"cluster_id":6,"storage_id":14},"target_cluster_storage":{"cluster_id":6,"storage_id":13}}`)
	put("mirror_environment/storage.12.13", `{"source_cluster_storage":{"cluster_id":5,"storage_id":12},"target_cluster_storage":{"cluster_id":6,"storage_id":13}}`)
	put(core.VolumeKey(vol7), `{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":7,"volume_uuid":"`+seedUUID+`"}}`)
	put(core.VolumeStatusKey(vol7), `{"state_code":"mirroring"}`)
	put(core.VolumeKey(vol8), `{"garbage`)

	be := &askedBackend{Backend: fake.NewBackend(harness.CephType), queries: map[string]ports.LeftoverQuery{}, fail: "6/14"}
	backends := fake.NewBackends(map[string]ports.StorageBackend{harness.CephType: be})
	s, err := app.SurveyLeftovers(context.Background(), kv, backends, time.Second, time.Second)
	if err != nil {
		t.Fatal(err)
	}

	var asked []string
	for _, st := range s.Storages {
		asked = append(asked, st.Storage)
	}
	if want := []string{"clusters/5/storages/11", "clusters/6/storages/13", "clusters/6/storages/14"}; !slices.Equal(asked, want) {
		t.Fatalf("storages asked = %q, want %q", asked, want)
	}
	envs, vols := be.asked("5/11")
	if !slices.Equal(envs, []string{"storage.11.13"}) || !slices.Equal(vols, []string{seedUUID}) {
		t.Errorf("storage 11 asked with environments %q, volumes %q", envs, vols)
	}
	envs, vols = be.asked("6/13")
	if slices.Sort(envs); !slices.Equal(envs, []string{"storage.11.13", "storage.14.13"}) || !slices.Equal(vols, []string{seedUUID}) {
		t.Errorf("storage 13 asked with environments %q, volumes %q", envs, vols)
	}
	if s.Found() != 3 || len(s.Storages[0].Leftovers) != 2 || len(s.Storages[1].Leftovers) != 1 {
		t.Errorf("found %+v, want the images of storages 11 and 13, and the process once, with storage 11", s.Storages)
	}
	un := s.Unanswered()
	if len(un) != 1 || un[0].Storage != "clusters/6/storages/14" || !errors.Is(un[0].Err, ports.ErrRetryable) || len(un[0].Leftovers) != 0 {
		t.Errorf("unanswered = %+v, want storage 14", un)
	}
	var skipped []string
	for _, sk := range s.Skipped {
		skipped = append(skipped, sk.Storage)
	}
	if !slices.Equal(skipped, []string{"clusters/5/storages/12", "clusters/7/storages/21"}) {
		t.Errorf("skipped = %+v, want storages 12 (metadata) and 21 (no plugin)", s.Skipped)
	}
	unusable := strings.Join(s.Unusable, "\n")
	if len(s.Unusable) != 2 || !strings.Contains(unusable, core.VolumeKey(vol8)) || !strings.Contains(unusable, "mirror_environment/storage.12.13") {
		t.Errorf("unusable records = %q, want volume 8 and environment 12.13", s.Unusable)
	}
}

// TestSurveyLeftoversStoreUnreadable: a store that cannot be read is the
// one error.
func TestSurveyLeftoversStoreUnreadable(t *testing.T) {
	kv := fake.NewKV()
	kv.SetFailure(errors.New("etcd unreachable"))
	_, err := app.SurveyLeftovers(context.Background(), kv, fake.NewBackends(nil), time.Second, time.Second)
	if err == nil || !strings.Contains(err.Error(), "etcd unreachable") {
		t.Fatalf("err = %v, want the store's error", err)
	}
}
