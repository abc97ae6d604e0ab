package app

import (
	"bytes"
	"sort"
	"strings"
	"sync"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// cache mirrors the watched keys in memory so reconciles read without
// asking the store. Each prefix is written by one goroutine only (its
// watcher), which replaces it wholesale after every listing.
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
}

func newCache() *cache {
	return &cache{keys: make(map[string]ports.KeyValue), revs: make(map[string]int64),
		children: make(map[string]map[string]struct{})}
}

// replace makes the keys under prefix exactly kvs, listed at revision rev,
// and returns the keys that changed (written, rewritten or gone).
func (c *cache) replace(prefix string, kvs []ports.KeyValue, rev int64) []ports.WatchEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.revs[prefix] = rev
	var changed []ports.WatchEvent
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		seen[kv.Key] = true
		old, ok := c.keys[kv.Key]
		if !ok || old.ModRevision != kv.ModRevision || !bytes.Equal(old.Value, kv.Value) {
			changed = append(changed, ports.WatchEvent{Type: ports.EventPut, KV: kv})
		}
		c.set(kv)
	}
	for k, old := range c.keys {
		if strings.HasPrefix(k, prefix) && !seen[k] {
			c.remove(k)
			changed = append(changed, ports.WatchEvent{Type: ports.EventDelete, KV: ports.KeyValue{Key: k, CreateRevision: old.CreateRevision}})
		}
	}
	return changed
}

// apply records one watch event of the watch on prefix.
func (c *cache) apply(prefix string, ev ports.WatchEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.revs[prefix] = max(c.revs[prefix], ev.KV.ModRevision)
	switch ev.Type {
	case ports.EventPut:
		c.set(ev.KV)
	case ports.EventDelete:
		c.remove(ev.KV.Key)
	}
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
