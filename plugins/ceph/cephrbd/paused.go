package cephrbd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// pausedSet is the set of paused images of an environment, persisted in
// the state directory so a pause survives restarts of rbd-mirror and of
// the plugin. Each image ("pool/image") keeps the other names its
// replayer may have (pool/global-id while it bootstraps).
type pausedSet struct {
	mu   sync.Mutex
	path string
}

// pausedSet returns the environment's paused set.
func (b *Backend) pausedSet(envID string) *pausedSet {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.paused[envID]
	if !ok {
		p = &pausedSet{path: filepath.Join(b.stateDir, "paused", envID+".json")}
		b.paused[envID] = p
	}
	return p
}

// load returns every replayer name that must stay stopped.
func (p *pausedSet) load() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var names []string
	for spec, aliases := range p.loadLocked() {
		names = append(names, spec)
		names = append(names, aliases...)
	}
	slices.Sort(names)
	return names
}

func (p *pausedSet) loadLocked() map[string][]string {
	set := map[string][]string{}
	b, err := os.ReadFile(p.path)
	if err != nil {
		return set
	}
	if json.Unmarshal(b, &set) != nil {
		var specs []string // the first format: a list of images
		_ = json.Unmarshal(b, &specs)
		for _, s := range specs {
			set[s] = nil
		}
	}
	return set
}

// specs returns the paused images, read once for many volumes.
func (p *pausedSet) specs() map[string][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.loadLocked()
}

func (p *pausedSet) has(spec string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.loadLocked()[spec]
	return ok
}

// set pauses or unpauses the image spec; aliases are its replayer's other
// names.
func (p *pausedSet) set(spec string, paused bool, aliases ...string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	set := p.loadLocked()
	old, ok := set[spec]
	switch {
	case paused && (!ok || !slices.Equal(old, aliases)):
		set[spec] = aliases
	case !paused && ok:
		delete(set, spec)
	default:
		return nil
	}
	if err := ensureDir(filepath.Dir(p.path)); err != nil {
		return err
	}
	b, _ := json.Marshal(set)
	return writePrivate(p.path, b)
}
