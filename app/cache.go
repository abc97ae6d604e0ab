package app

import (
	"bytes"
	"sort"
	"strings"
	"sync"

	"github.com/cdmdr/mirror/ports"
)

// cache mirrors the watched keys in memory so reconciles read without
// asking the store. Each prefix is written by one goroutine only (its
// watcher), which replaces it wholesale after every listing.
type cache struct {
	mu   sync.RWMutex
	keys map[string]ports.KeyValue
	// revs is, per watched prefix, the store revision the cache reflects
	// at least: the last listing's, or the last event's.
	revs map[string]int64
}

func newCache() *cache {
	return &cache{keys: make(map[string]ports.KeyValue), revs: make(map[string]int64)}
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
		c.keys[kv.Key] = kv
	}
	for k, old := range c.keys {
		if strings.HasPrefix(k, prefix) && !seen[k] {
			delete(c.keys, k)
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
		c.keys[ev.KV.Key] = ev.KV
	case ports.EventDelete:
		delete(c.keys, ev.KV.Key)
	}
}

// get returns the value of key and whether it exists.
func (c *cache) get(key string) ([]byte, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	kv, ok := c.keys[key]
	return kv.Value, ok
}

// list returns the keys under prefix, sorted.
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
