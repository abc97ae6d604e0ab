package app

import (
	"testing"

	"github.com/cdmdr/mirror/ports"
)

const vol7 = "mirror_volume/storage.1.2/volume.7"

func put(key, value string, rev int64) ports.WatchEvent {
	return ports.WatchEvent{Type: ports.EventPut, KV: ports.KeyValue{Key: key, Value: []byte(value), ModRevision: rev, CreateRevision: rev}}
}

func del(key string, rev int64) ports.WatchEvent {
	return ports.WatchEvent{Type: ports.EventDelete, KV: ports.KeyValue{Key: key, ModRevision: rev}}
}

func value(t *testing.T, c *cache, key string) string {
	t.Helper()
	v, ok := c.get(key)
	if !ok {
		return "<none>"
	}
	return string(v)
}

// TestCacheHoldsOwnWrites: a leader's write is read back at once, and the
// watch bringing older changes of the key later does not undo it.
func TestCacheHoldsOwnWrites(t *testing.T) {
	c := newCache()
	c.apply(VolumePrefixForTest, put(vol7+"/status", "initializing", 10))
	c.wrote(vol7+"/status", []byte("mirroring"), 12)
	if got := value(t, c, vol7+"/status"); got != "mirroring" {
		t.Fatalf("after our write, status = %q, want mirroring", got)
	}
	c.apply(VolumePrefixForTest, put(vol7+"/status", "stale", 11)) // a write the watch lagged on
	if got := value(t, c, vol7+"/status"); got != "mirroring" {
		t.Fatalf("a late watch event (rev 11) overwrote our write (rev 12): status = %q", got)
	}
	c.apply(VolumePrefixForTest, put(vol7+"/status", "mirroring", 12)) // our own write comes back
	c.apply(VolumePrefixForTest, put(vol7+"/status", "paused", 13))    // a newer one wins
	if got := value(t, c, vol7+"/status"); got != "paused" {
		t.Fatalf("a newer watch event (rev 13) was ignored: status = %q", got)
	}
	// A listing taken before our write does not undo it either.
	c.wrote(vol7+"/status", []byte("stopping"), 20)
	c.replace(VolumePrefixForTest, []ports.KeyValue{{Key: vol7 + "/status", Value: []byte("paused"), ModRevision: 13}}, 19)
	if got := value(t, c, vol7+"/status"); got != "stopping" {
		t.Fatalf("a listing at rev 19 overwrote our write at rev 20: status = %q", got)
	}
}

// TestCacheKeepsOwnDeletes: keys this daemon deleted stay deleted while
// the watch still brings their older puts, and come back only with a
// newer write.
func TestCacheKeepsOwnDeletes(t *testing.T) {
	c := newCache()
	for i, k := range []string{vol7, vol7 + "/operation", vol7 + "/status", vol7 + "/snapshot.3"} {
		c.apply(VolumePrefixForTest, put(k, "v", int64(10+i)))
	}
	c.deleted([]string{vol7}, []string{vol7 + "/"}, 30)
	if kvs, _ := c.resource(vol7); len(kvs) != 0 {
		t.Fatalf("after our delete, the cache still holds %d keys of the volume", len(kvs))
	}
	c.apply(VolumePrefixForTest, put(vol7+"/status", "late", 25))
	if got := value(t, c, vol7+"/status"); got != "<none>" {
		t.Fatalf("a put older than our delete brought the key back: %q", got)
	}
	for _, k := range []string{vol7, vol7 + "/operation", vol7 + "/status", vol7 + "/snapshot.3"} {
		c.apply(VolumePrefixForTest, del(k, 30)) // the watch reaches the delete
	}
	c.apply(VolumePrefixForTest, put(vol7, "again", 31)) // the DR manager writes it again
	if got := value(t, c, vol7); got != "again" {
		t.Fatalf("a newer put after our delete was ignored: %q", got)
	}
	if len(c.tombstones) != 0 {
		t.Errorf("tombstones the watch has passed are kept: %v", c.tombstones)
	}
}

// TestCacheRefreshAndWholeness: a resource read from the store replaces
// what the cache has of it (and nothing else), and a record missing under
// present keys is reported, so the reader asks the store.
func TestCacheRefreshAndWholeness(t *testing.T) {
	c := newCache()
	c.apply(VolumePrefixForTest, put(vol7, "rec", 5))
	c.apply(VolumePrefixForTest, put(vol7+"/operation", "start", 6))
	c.apply(VolumePrefixForTest, put(vol7+"0", "other volume", 7))
	c.apply(VolumePrefixForTest, del(vol7, 8)) // half of a multi-key delete
	if _, whole := c.resource(vol7); whole {
		t.Fatal("keys below a missing record reported whole")
	}
	// The store, at rev 9, has the volume gone entirely.
	c.refresh(vol7, []ports.KeyValue{{Key: vol7 + "0", Value: []byte("other volume"), ModRevision: 7}}, 9)
	if kvs, whole := c.resource(vol7); !whole || len(kvs) != 0 {
		t.Fatalf("after the refresh the volume has %d keys (whole %v), want none", len(kvs), whole)
	}
	if got := value(t, c, vol7+"0"); got != "other volume" {
		t.Fatalf("refreshing volume.7 touched volume.70: %q", got)
	}
	c.apply(VolumePrefixForTest, put(vol7+"/operation", "start", 6)) // a replayed old event
	if got := value(t, c, vol7+"/operation"); got != "<none>" {
		t.Fatalf("an event older than the refresh brought a deleted key back: %q", got)
	}
}

// VolumePrefixForTest is the watched prefix the keys above belong to.
const VolumePrefixForTest = "mirror_volume/"
