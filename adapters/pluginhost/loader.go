package pluginhost

import (
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// entry is a file of the plugin directory the host considered: loaded
// (m) or refused (err).
type entry struct {
	path string
	fp   fingerprint
	m    *managed
	err  error
}

func (e *entry) name() string { return filepath.Base(e.path) }

// fingerprint tells whether a file changed since it was loaded or
// refused, without reading it: a changed one is considered anew.
type fingerprint struct {
	size  int64
	mtime time.Time
	mode  fs.FileMode
	ino   uint64
	// uid: a chown considers the file anew (the owner is checked).
	uid int
	// pinned is what SHA256SUMS says of the file, so that editing it
	// considers the file anew too.
	pinned string
}

// candidate is a plugin file found by a scan.
type candidate struct {
	path    string
	fp      fingerprint
	sums    sums
	sumsErr error
}

// list finds the plugin files of the directory, or says why none may be
// loaded from it.
func (h *Host) list() (map[string]candidate, error) {
	if err := checkDir(h.dir); err != nil {
		return nil, err
	}
	des, err := os.ReadDir(h.dir)
	if err != nil {
		return nil, fmt.Errorf("plugin directory %s: %w", h.dir, err)
	}
	s, sumsErr := readSums(h.dir)
	out := map[string]candidate{}
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, ".") || name == SumsFile {
			continue
		}
		path := filepath.Join(h.dir, name)
		fi, err := os.Stat(path) // through symbolic links
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			continue
		}
		fp := fingerprint{size: fi.Size(), mtime: fi.ModTime(), mode: fi.Mode()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			fp.ino, fp.uid = st.Ino, int(st.Uid)
		}
		switch sum, listed := s[name]; {
		case sumsErr != nil:
			fp.pinned = "unreadable: " + sumsErr.Error()
		case s == nil:
		case listed:
			fp.pinned = sum
		default:
			fp.pinned = "unlisted"
		}
		out[name] = candidate{path: path, fp: fp, sums: s, sumsErr: sumsErr}
	}
	return out, nil
}

// scan brings the loaded plugins in line with the directory.
func (h *Host) scan() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.wg.Add(1)
	h.mu.Unlock()
	defer h.wg.Done()
	defer h.scanOnce.Do(func() { close(h.scanned) })

	files, dirErr := h.list()

	h.mu.Lock()
	if errString(dirErr) != errString(h.dirErr) {
		if dirErr != nil {
			h.log.Error("plugin directory refused", "dir", h.dir, "err", dirErr)
		} else if h.dirErr != nil {
			h.log.Info("plugin directory accepted again", "dir", h.dir)
		}
	}
	h.dirErr = dirErr
	if dirErr == nil {
		h.warnUnmatchedLocked(files)
	}
	var gone, running []*managed
	for name, e := range h.entries {
		c, ok := files[name]
		if ok && c.fp == e.fp {
			if e.m != nil {
				running = append(running, e.m)
			}
			continue
		}
		delete(h.entries, name)
		if e.m != nil {
			gone = append(gone, e.m)
			why := "its file changed"
			if !ok {
				why = "its file is gone"
			}
			if dirErr != nil {
				why = "the plugin directory is refused"
			}
			e.m.log.Info("unloading plugin", "reason", why)
		}
	}
	var load []candidate
	for name, c := range files {
		if _, ok := h.entries[name]; !ok {
			load = append(load, c)
		}
	}
	h.mu.Unlock()

	for _, m := range gone {
		h.wg.Go(m.close)
	}
	for _, m := range running {
		m.poke()
	}

	loaded := make([]*entry, len(load))
	var wg sync.WaitGroup
	for i, c := range load {
		wg.Go(func() { loaded[i] = h.load(c) })
	}
	wg.Wait()

	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range loaded {
		if h.closed {
			if e.m != nil {
				h.wg.Go(e.m.close)
			}
			continue
		}
		h.entries[e.name()] = e
	}
	for _, e := range loaded {
		if e.m != nil && !h.closed {
			h.logConflictsLocked(e)
		}
	}
}

// warnUnmatchedLocked warns about the plugin settings no file of the
// directory takes (a typo, or a plugin not installed), once each time one
// goes unmatched.
func (h *Host) warnUnmatchedLocked(files map[string]candidate) {
	now := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(h.cfg.Plugins)) {
		if _, ok := files[name]; ok {
			continue
		}
		now[name] = true
		if !h.unmatched[name] {
			h.log.Warn("settings given for a plugin the plugin directory does not hold: they apply to no plugin until a file of that name is added",
				"plugin", name, "dir", h.dir, "plugins_in_dir", slices.Sorted(maps.Keys(files)))
		}
	}
	h.unmatched = now
}

// load verifies and starts one plugin file.
func (h *Host) load(c candidate) *entry {
	e := &entry{path: c.path, fp: c.fp}
	log := h.log.With("plugin", e.name())
	refuse := func(err error) *entry {
		e.err = err
		log.Error("plugin refused", "plugin_path", c.path, "err", err)
		return e
	}
	if c.sumsErr != nil {
		return refuse(c.sumsErr)
	}
	sum, err := verify(c.path, c.sums)
	if err != nil {
		return refuse(err)
	}
	m := newManaged(h, c.path, sum)
	if err := m.load(); err != nil {
		return refuse(err)
	}
	st := m.status()
	attrs := []any{"name", st.Name, "version", st.Version, "storage_types", st.Types, "pid", st.Pid, "sha256", hex.EncodeToString(sum)}
	if s, ok := h.cfg.Plugins[e.name()]; ok {
		// The names of its environment, not the values: they may be secrets.
		attrs = append(attrs, "args", s.Args, "env", slices.Sorted(maps.Keys(s.Env)))
	}
	log.Info("plugin loaded", attrs...)
	e.m = m
	return e
}

// logConflictsLocked warns about the storage types e claims that another
// loaded plugin claims too: those are served by neither.
func (h *Host) logConflictsLocked(e *entry) {
	for _, t := range e.m.types() {
		var others []string
		for _, o := range h.sortedLocked() {
			if o != e && o.m != nil && slices.Contains(o.m.types(), t) {
				others = append(others, o.name())
			}
		}
		if len(others) > 0 {
			h.log.Error("storage type claimed by several plugins: none of them serves it",
				"storage_type", t, "plugins", append([]string{e.name()}, others...))
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
