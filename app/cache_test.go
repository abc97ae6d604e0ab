package app

import (
	"testing"

	"github.com/cdmdr/mirror/ports"
)

func TestParentOf(t *testing.T) {
	for key, want := range map[string]string{
		"mirror_environment/storage.1.2/status":                "mirror_environment/storage.1.2",
		"mirror_environment/storage.1.2/operation":             "mirror_environment/storage.1.2",
		"mirror_volume/storage.1.2/volume.7":                   "mirror_volume/storage.1.2",
		"mirror_volume/storage.1.2/volume.7/status":            "mirror_volume/storage.1.2/volume.7",
		"mirror_volume/storage.1.2/volume.7/snapshot.3/status": "mirror_volume/storage.1.2/volume.7",
		"mirror_volume/storage.1.2/volume.70/operation":        "mirror_volume/storage.1.2/volume.70",
		"mirror_environment/storage.1.2":                       "",
		"clusters/5/storages/11":                               "",
		"mirror_leader/mirror_volume/storage.1.2/volume.7":     "",
	} {
		got, ok := parentOf(key)
		if (want == "") == ok || got != want {
			t.Errorf("parentOf(%q) = %q, %v; want %q", key, got, ok, want)
		}
	}
}

func TestCacheUnder(t *testing.T) {
	c := newCache()
	put := func(k string) {
		c.apply(k, ports.WatchEvent{Type: ports.EventPut, KV: ports.KeyValue{Key: k, Value: []byte("v")}})
	}
	put("mirror_volume/storage.1.2/volume.7")
	put("mirror_volume/storage.1.2/volume.7/operation")
	put("mirror_volume/storage.1.2/volume.7/snapshot.3")
	put("mirror_volume/storage.1.2/volume.70/operation")
	put("mirror_volume/storage.1.2/volume.8")
	if got := keysOf(c.under("mirror_volume/storage.1.2/volume.7")); len(got) != 2 ||
		got[0] != "mirror_volume/storage.1.2/volume.7/operation" || got[1] != "mirror_volume/storage.1.2/volume.7/snapshot.3" {
		t.Fatalf("under(volume.7) = %v", got)
	}
	if got := keysOf(c.under("mirror_volume/storage.1.2")); len(got) != 2 {
		t.Fatalf("under(storage.1.2) = %v, want the records of volumes 7 and 8", got)
	}
	c.replace("mirror_volume/", []ports.KeyValue{{Key: "mirror_volume/storage.1.2/volume.8", Value: []byte("v")}}, 9)
	if got := keysOf(c.under("mirror_volume/storage.1.2/volume.7")); len(got) != 0 {
		t.Fatalf("under(volume.7) after a listing without it = %v", got)
	}
	if got := keysOf(c.under("mirror_volume/storage.1.2")); len(got) != 1 {
		t.Fatalf("under(storage.1.2) = %v, want volume 8 only", got)
	}
}

func keysOf(kvs []ports.KeyValue) []string {
	var out []string
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return out
}
