package app

import (
	"bytes"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// cache mirrors the watched keys in memory so reconciles read without
// asking the store. It owns coherence, as an informer does: each prefix
// is fed by one watcher (listings and events), and the leaders' own
// writes go in at once with the revision the store gave them, so a
// reconcile reads what it wrote before the watch brings it back. Every
// key keeps its ModRevision, and a change older than what the cache holds
// is ignored: a late watch event cannot undo a newer write, and a key
// this daemon deleted stays deleted (tombstones) until the watch has
// passed the deletion.
type cache struct {
	mu   sync.RWMutex
	keys map[string]ports.KeyValue
	// children groups keys by their parent (see parentOf), so a worker
	// reads its own keys, and an environment its volumes, without
	// scanning every key: with 10,000 volumes a scan per reconcile costs
	// more than everything else the engine does.
	children map[string]map[string]struct{}
	// revs is, per watched prefix, the store revision the cache reflects
	// at least: the last listing's, or the last event's.
	revs map[string]int64
	// tombstones are keys deleted here ahead of the watch, with the
	// revision of the deletion: an older put arriving late is ignored.
	tombstones map[string]int64
}

func newCache() *cache {
	return &cache{keys: make(map[string]ports.KeyValue), revs: make(map[string]int64),
		children: make(map[string]map[string]struct{}), tombstones: make(map[string]int64)}
}

// replace makes the keys under prefix exactly kvs, listed at revision rev,
// and returns the keys that changed (written, rewritten or gone).
func (c *cache) replace(prefix string, kvs []ports.KeyValue, rev int64) []ports.WatchEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.revs[prefix] = rev
	var present []string
	for k := range c.keys {
		if strings.HasPrefix(k, prefix) {
			present = append(present, k)
		}
	}
	changed := c.merge(present, kvs, rev)
	c.forgetTombstones(prefix)
	return changed
}

// merge makes the keys of a part of the store exactly kvs, read at
// revision rev, except where the cache holds something newer (a write or
// deletion of this daemon's the read did not see yet). present are the
// keys the cache holds of that part. It returns the keys that changed.
func (c *cache) merge(present []string, kvs []ports.KeyValue, rev int64) []ports.WatchEvent {
	var changed []ports.WatchEvent
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		seen[kv.Key] = true
		old, ok := c.keys[kv.Key]
		if c.stale(kv.Key, kv.ModRevision) {
			continue
		}
		// One revision is one value: the bytes need comparing only when
		// revisions are unknown (0).
		if !ok || old.ModRevision != kv.ModRevision || (kv.ModRevision == 0 && !bytes.Equal(old.Value, kv.Value)) {
			changed = append(changed, ports.WatchEvent{Type: ports.EventPut, KV: kv})
		}
		c.set(kv)
	}
	for _, k := range present {
		if old := c.keys[k]; !seen[k] && old.ModRevision <= rev {
			c.remove(k)
			changed = append(changed, ports.WatchEvent{Type: ports.EventDelete, KV: ports.KeyValue{Key: k, CreateRevision: old.CreateRevision}})
		}
	}
	return changed
}

// stale reports whether a change of key at revision rev is older than
// what the cache holds.
func (c *cache) stale(key string, rev int64) bool {
	if old, ok := c.keys[key]; ok && old.ModRevision > rev {
		return true
	}
	return c.tombstones[key] >= rev && c.tombstones[key] > 0
}

// forgetTombstones drops the tombstones under prefix that the prefix's
// watch has passed: nothing older can arrive after.
func (c *cache) forgetTombstones(prefix string) {
	for k, rev := range c.tombstones {
		if strings.HasPrefix(k, prefix) && rev <= c.revs[prefix] {
			delete(c.tombstones, k)
		}
	}
}

// apply records one watch event of the watch on prefix.
func (c *cache) apply(prefix string, ev ports.WatchEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.revs[prefix] = max(c.revs[prefix], ev.KV.ModRevision)
	stale := c.stale(ev.KV.Key, ev.KV.ModRevision)
	if tomb, ok := c.tombstones[ev.KV.Key]; ok && ev.KV.ModRevision >= tomb {
		delete(c.tombstones, ev.KV.Key) // the watch has passed our deletion of this key
	}
	if stale {
		return
	}
	switch ev.Type {
	case ports.EventPut:
		c.set(ev.KV)
	case ports.EventDelete:
		c.remove(ev.KV.Key)
	}
}

// wrote records this daemon's own write of key=value at revision rev.
func (c *cache) wrote(key string, value []byte, rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stale(key, rev) {
		return
	}
	kv := ports.KeyValue{Key: key, Value: value, ModRevision: rev, CreateRevision: rev}
	if old, ok := c.keys[key]; ok {
		kv.CreateRevision = old.CreateRevision
	}
	c.set(kv)
}

// deleted records this daemon's own deletion, at revision rev, of keys
// and of every key under prefixes.
func (c *cache) deleted(keys, prefixes []string, rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	gone := func(k string) {
		if old, ok := c.keys[k]; ok && old.ModRevision > rev {
			return // written again since
		}
		c.remove(k)
		c.tombstones[k] = rev
	}
	for _, k := range keys {
		gone(k)
	}
	for _, p := range prefixes {
		// A resource's keys are indexed under its record key: no scan.
		if kids, ok := c.children[strings.TrimSuffix(p, "/")]; ok && strings.HasSuffix(p, "/") {
			for k := range kids {
				gone(k)
			}
			continue
		}
		for k := range c.keys {
			if strings.HasPrefix(k, p) {
				gone(k)
			}
		}
	}
}

// refresh merges what the store holds for resource (its record and every
// key below it), read at revision rev, and returns the keys that changed.
func (c *cache) refresh(resource string, kvs []ports.KeyValue, rev int64) []ports.WatchEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	own := kvs[:0:0]
	for _, kv := range kvs {
		if under(kv.Key, resource) {
			own = append(own, kv)
		}
	}
	// A resource's keys are indexed under its record key: no scan.
	present := slices.Collect(maps.Keys(c.children[resource]))
	if _, ok := c.keys[resource]; ok {
		present = append(present, resource)
	}
	changed := c.merge(present, own, rev)
	for _, ev := range changed {
		if ev.Type == ports.EventDelete {
			c.tombstones[ev.KV.Key] = rev // an older put may still be on its way
		}
	}
	return changed
}

func (c *cache) set(kv ports.KeyValue) {
	if _, ok := c.keys[kv.Key]; !ok {
		if p, ok := parentOf(kv.Key); ok {
			if c.children[p] == nil {
				c.children[p] = make(map[string]struct{})
			}
			c.children[p][kv.Key] = struct{}{}
		}
	}
	c.keys[kv.Key] = kv
}

func (c *cache) remove(key string) {
	if _, ok := c.keys[key]; !ok {
		return
	}
	delete(c.keys, key)
	if p, ok := parentOf(key); ok {
		delete(c.children[p], key)
		if len(c.children[p]) == 0 {
			delete(c.children, p)
		}
	}
}

// parentOf names the group a key is indexed under:
//
//	mirror_environment/storage.1.2/status          → mirror_environment/storage.1.2
//	mirror_volume/storage.1.2/volume.7             → mirror_volume/storage.1.2
//	mirror_volume/storage.1.2/volume.7/snapshot.3/status → mirror_volume/storage.1.2/volume.7
//
// so the children of an environment or volume key are its own keys, and
// the children of mirror_volume/storage.{s}.{t} are its volumes' records.
func parentOf(key string) (string, bool) {
	var base string
	var depth int
	switch {
	case strings.HasPrefix(key, core.VolumePrefix):
		base, depth = core.VolumePrefix, 2
	case strings.HasPrefix(key, core.EnvironmentPrefix):
		base, depth = core.EnvironmentPrefix, 1
	default:
		return "", false
	}
	rest := key[len(base):]
	end := 0
	for i := 0; i < depth; i++ {
		j := strings.IndexByte(rest[end:], '/')
		if j < 0 {
			if i == depth-1 && end > 0 {
				return key[:len(base)+end-1], true // a volume record: grouped by environment
			}
			return "", false
		}
		end += j + 1
	}
	return key[:len(base)+end-1], true
}

// hasChildren reports whether any key has parent as its parent.
func (c *cache) hasChildren(parent string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.children[parent]) > 0
}

// under returns the keys whose parent is parent (see parentOf), sorted.
func (c *cache) under(parent string) []ports.KeyValue {
	c.mu.RLock()
	out := make([]ports.KeyValue, 0, len(c.children[parent]))
	for k := range c.children[parent] {
		out = append(out, c.keys[k])
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// get returns the value of key and whether it exists.
func (c *cache) get(key string) ([]byte, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	kv, ok := c.keys[key]
	return kv.Value, ok
}

// list returns the keys under prefix, sorted. It scans every key: for
// the keys of one resource use under.
func (c *cache) list(prefix string) []ports.KeyValue {
	c.mu.RLock()
	var out []ports.KeyValue
	for k, kv := range c.keys {
		if strings.HasPrefix(k, prefix) {
			out = append(out, kv)
		}
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// revision returns the store revision the keys under prefix (a watched
// prefix) reflect at least.
func (c *cache) revision(prefix string) int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.revs[prefix]
}

// resource returns the keys of the resource whose record key is key: the
// record and the keys below it. whole is false when keys below exist
// without the record.
func (c *cache) resource(key string) (kvs []ports.KeyValue, whole bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	rec, ok := c.keys[key]
	if ok {
		kvs = append(kvs, rec)
	}
	for k := range c.children[key] {
		kvs = append(kvs, c.keys[k])
	}
	return kvs, ok || len(kvs) == 0
}

// environments returns the ids of the environment records held.
func (c *cache) environments() []core.EnvironmentID {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []core.EnvironmentID
	for k := range c.keys {
		if pk, err := core.ParseKey(k); err == nil && pk.Kind == core.KindEnvironment {
			out = append(out, pk.Env)
		}
	}
	return out
}

// leaderless returns the record keys under prefix (an environment or the
// volume prefix) whose leader key, under leaderPrefix, the cache does not
// hold: the resources nobody leads.
func (c *cache) leaderless(prefix, leaderPrefix string) []string {
	// A record key has this many slashes after the prefix; its own keys
	// have more.
	depth := 0
	if prefix == core.VolumePrefix {
		depth = 1
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []string
	for k := range c.keys {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok || strings.Count(rest, "/") != depth {
			continue
		}
		if _, led := c.keys[leaderPrefix+k]; !led {
			out = append(out, k)
		}
	}
	return out
}
